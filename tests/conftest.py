import os
import pytest


def _has_gpu() -> bool:
    from netdsl.backend.device import get_device
    return get_device("auto").name == "gpu"


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_gpu():
        skip = pytest.mark.skip(reason="needs CuPy and an NVIDIA GPU; run scripts/gpu-check on a GPU machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def fine_grained_work(monkeypatch):
    """Every split and block boundary crossed: the CPU kernels split work over two threads from
    0 elements on (by default from 1M), and batch norm and max pooling go one channel a block."""
    from netdsl.backend.cpu import threads
    from netdsl.backend.kernels import windows
    monkeypatch.setattr(windows, "POOL_BLOCK", 1)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(threads, "WORKERS", 2)


@pytest.fixture(params=["native", "numpy"])
def cpu_kernels(request, monkeypatch):
    """Both CPU implementations of im2col/col2im, max pooling and batch norm: the compiled loops
    (backend/cpu/native.py; they need the machine's C compiler, which the test set-up has) and
    the numpy fallback every machine without one runs."""
    from netdsl.backend.cpu import native
    if request.param == "numpy":
        monkeypatch.setattr(native, "available", lambda xp, dtype: False)
    else:
        assert native.library() is not None, "no working C compiler: the native kernels are untested"
    return request.param


@pytest.fixture
def compiled_kernels():
    """The compiled kernels (native.c), for the tests of paths only they run: scripts/test installs
    a C compiler where none is found, so their absence fails such a test instead of skipping it
    (a skipped test would prove nothing)."""
    from netdsl.backend.cpu import native
    assert native.library() is not None, ("no working C compiler (or NETDSL_NATIVE=0): the compiled "
                                          "kernels, and the paths only they run, are untested")


# Every test sees the fixed thresholds (NETDSL_TUNE=off: no timing decides a path, so runs repeat
# exactly, and no cache file is read or written); tests/test_tuner.py turns tuning on. Set for the
# whole session, not by a function-scoped fixture: module-scoped fixtures (the data-parallel runs
# that later tests compare bit for bit) are made before any function-scoped one runs.
os.environ["NETDSL_TUNE"] = "off"


@pytest.fixture(autouse=True)
def fixed_conv_choice(monkeypatch):
    """Back to the fixed thresholds for each test, whatever the one before it set."""
    monkeypatch.setenv("NETDSL_TUNE", "off")
