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
