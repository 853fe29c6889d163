import numpy as np, pytest, soundfile as sf, torch


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


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A tiny model, a clip and its token file."
    from rotvq_audio.codec import CodecConfig, CodecModel
    d = tmp_path_factory.mktemp("work")
    torch.manual_seed(0)
    CodecModel(CodecConfig.tiny()).save_pretrained(d / "tiny")
    sf.write(d / "clip.wav", (np.random.default_rng(0).standard_normal(20000) * 0.1).astype(np.float32), 16000)
    assert run_rotvq("encode", d / "clip.wav", d / "clip.npz", "--model", d / "tiny")[0] == 0
    return d


def npy_header(shape, descr="<i2") -> bytes:
    "The header of a .npy member claiming `shape`, for forged token files."
    h = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    h = h + b" " * (-(len(h) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h


def zero_token_file(path, meta: dict, shape: tuple):
    "A token file of zero codes of `shape`, streamed into the archive: gigabytes of codes in a few hundred kB."
    import io, json, zipfile
    buf = io.BytesIO(); np.save(buf, np.array(json.dumps(meta)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("codes.npy", "w", force_zip64=True) as f:
            f.write(npy_header(shape)); zero, left = bytes(1 << 24), int(np.prod(shape)) * 2
            while left: f.write(zero[:min(left, len(zero))]); left -= min(left, len(zero))
        zf.writestr("meta.npy", buf.getvalue())
    return path
