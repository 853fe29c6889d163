import pytest, torch


@pytest.fixture
def one_thread():
    "One torch thread: the tiny models gain nothing from more, and spinning threads crawl on a shared 2-core box."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_rotvq(*argv):
    "`rotvq ARGS` in-process: (exit status, stdout, stderr)."
    import contextlib, io
    from rotvq_audio import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = cli.main([str(a) for a in argv])
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()
