from tests.runtime.fixtures import runtime  # noqa: F401  (fixture: the pinned llama.cpp build)
