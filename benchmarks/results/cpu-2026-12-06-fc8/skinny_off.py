# runs a benchmark script with the skinny fc off (the inference path as before this branch)
import runpy, sys
import netdsl
from netdsl.backend import inference
inference.SKINNY_ROWS = range(0)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
