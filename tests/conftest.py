import pytest, torch


@pytest.fixture
def one_thread():
    "One torch thread: the tiny models gain nothing from more, and spinning threads crawl on a shared 2-core box."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
