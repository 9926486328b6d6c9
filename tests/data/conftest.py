import pytest


@pytest.fixture(autouse=True)
def _image_cache(tmp_path, monkeypatch):
    """Every test of the data package builds its image caches in its own folder."""
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
