"Integration and failure tests of the codec model: shapes, saving/loading, causality, bitrates, bad input."
import json, os
from pathlib import Path
import pytest
import torch
from rotvq_audio.codec import CodecModel, CodecConfig, CONFIG_NAME, WEIGHTS_NAME

torch.set_num_threads(2)


def _model(**kw):
    torch.manual_seed(0)
    return CodecModel(CodecConfig.tiny(**kw)).eval()


def _audio(T, B=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(B, 1, T, generator=g)


@pytest.fixture(scope="module")
def trained_tiny():
    "A tiny model after a few training steps, so codebooks and weights are not at their initial values."
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.tiny())
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for i in range(3):
        x = _audio(3200, B=4, seed=i)
        out = m(x)
        ((out.audio - x).abs().mean() + sum(out.losses.values())).backward()
        opt.step(); opt.zero_grad()
    return m.eval()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 319, 320, 321, 1001, 3333])
def test_output_length_equals_input_length(T, causal):
    m = _model(causal=causal)
    x = _audio(T, B=2)
    out = m(x)
    frames = -(-T // 320)
    assert out.audio.shape == (2, 1, T)
    assert out.codes.shape == (2, 12, frames)
    codes = m.encode(x)
    assert codes.shape == (2, 12, frames) and codes.dtype == torch.int64
    assert m.decode(codes, length=T).shape == (2, 1, T)
    assert m.decode(codes).shape == (2, 1, frames * 320)


def test_forward_gradients_reach_encoder_and_dropout_marks_codes():
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.tiny(quantizer_dropout=1.0)).train()
    x = _audio(1600, B=8)
    out = m(x)
    assert torch.isfinite(out.audio).all()
    ((out.audio - x).abs().mean() + sum(out.losses.values())).backward()
    for name in ("encoder.embed.weight", "encoder.proj.weight", "decoder.head.proj.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    # with dropout probability 1 every sample keeps a random number of stages; later ones are marked -1
    assert (out.codes == -1).any() and (out.codes[:, 0] >= 0).all()


def test_save_and_load_round_trip(tmp_path, trained_tiny):
    x = _audio(4000, B=2)
    trained_tiny.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temporary files left behind
    assert CodecConfig.from_dict(json.loads((tmp_path / CONFIG_NAME).read_text())) == trained_tiny.config
    loaded = CodecModel.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == trained_tiny.config
    codes = trained_tiny.encode(x)
    assert torch.equal(loaded.encode(x), codes)
    assert torch.equal(loaded.decode(codes, 4000), trained_tiny.decode(codes, 4000))
    for (k, a), (_, b) in zip(trained_tiny.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_save_overwrites_existing_model(tmp_path):
    _model().save_pretrained(tmp_path)
    m2 = _model(latent_dim=24)
    m2.save_pretrained(tmp_path)
    assert CodecModel.from_pretrained(tmp_path).config.latent_dim == 24


def test_mismatched_config_names_fields_and_tensors(tmp_path):
    _model().save_pretrained(tmp_path)
    other = _model(latent_dim=24, n_q=8)
    with pytest.raises(ValueError) as e:
        other.load_weights(tmp_path / WEIGHTS_NAME)
    msg = str(e.value)
    assert "latent_dim=24 vs 16" in msg and "n_q=8 vs 12" in msg
    assert "unexpected" in msg and "quantizer.stages.8" in msg
    assert "encoder.proj.weight: expected (24, 32, 1), found (16, 32, 1)" in msg
    assert str(tmp_path / WEIGHTS_NAME) in msg


def test_weights_without_config_still_name_tensors(tmp_path):
    _model().save_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match="shape mismatch"):
        _model(latent_dim=24).load_weights(tmp_path / WEIGHTS_NAME)


def test_corrupted_weights(tmp_path):
    _model().save_pretrained(tmp_path)
    data = (tmp_path / WEIGHTS_NAME).read_bytes()
    (tmp_path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"could not read weights from .*{WEIGHTS_NAME}"):
        CodecModel.from_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupted"):
        CodecModel.from_pretrained(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        CodecModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        CodecModel.from_pretrained(tmp_path)
    _model().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        CodecModel.from_pretrained(tmp_path)


def test_bad_config_file(tmp_path):
    _model().save_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="could not parse"):
        CodecModel.from_pretrained(tmp_path)
    d = CodecConfig.tiny().to_dict(); d["hop_lenght"] = 320
    (tmp_path / CONFIG_NAME).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="hop_lenght"):
        CodecModel.from_pretrained(tmp_path)


def test_config_rebuilds_presets():
    for name in ("tiny", "small", "base"):
        cfg = getattr(CodecConfig, name)(causal=True)
        assert CodecConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_small_model_fits_the_bundle_budget():
    m = CodecModel(CodecConfig.small())
    nbytes = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    assert nbytes < 16 * 2**20


@pytest.mark.parametrize("start", [1, 5, 9])
def test_causal_encoder_ignores_future(trained_tiny, start):
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.tiny(causal=True))
    m.load_state_dict(trained_tiny.state_dict())  # same shapes: causality is a property of the padding
    m.eval()
    x = _audio(3200)
    x2 = x.clone(); x2[..., start * 320:] = _audio(3200 - start * 320, seed=7)
    c, c2 = m.encode(x), m.encode(x2)
    assert torch.equal(c[..., :start], c2[..., :start])
    assert not torch.equal(c[..., start:], c2[..., start:])
    # the reconstruction before the change is untouched too
    assert torch.equal(m(x).audio[..., : start * 320], m(x2).audio[..., : start * 320])


@pytest.mark.parametrize("start", [1, 5, 9])
def test_causal_decoder_ignores_future_codes(start):
    m = _model(causal=True)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (2, 12, 10), generator=g)
    c2 = codes.clone(); c2[..., start:] = torch.randint(0, 1024, c2[..., start:].shape, generator=g)
    y, y2 = m.decode(codes), m.decode(c2)
    assert torch.equal(y[..., : start * 320], y2[..., : start * 320])
    assert not torch.equal(y[..., start * 320:], y2[..., start * 320:])


def test_non_causal_model_looks_ahead():
    "The check above can fail: the offline model's codes do depend on the next frame."
    m = _model()
    x = _audio(3200); x2 = x.clone(); x2[..., 5 * 320:] += 0.5
    assert not torch.equal(m.encode(x)[..., :5], m.encode(x2)[..., :5])


def test_bitrates():
    m = _model()
    assert [m.bitrate(n) for n in (3, 6, 12)] == [1500, 3000, 6000]
    assert [m.n_q_for_kbps(k) for k in (1.5, 3, 6)] == [3, 6, 12]
    assert m.frame_rate == 50 and m.sample_rate == 16000 and m.codebook_size == 1024 and m.n_q == 12
    x = _audio(1600)
    for kbps, n in ((1.5, 3), (3, 6), (6, 12)):
        codes = m.encode(x, n_q=m.n_q_for_kbps(kbps))
        assert codes.shape[1] == n
        assert m.decode(codes).shape == (1, 1, 1600)
    with pytest.raises(ValueError, match="expected a bitrate"):
        m.n_q_for_kbps(7)


def test_fewer_stages_are_a_prefix(trained_tiny):
    x = _audio(3200)
    full = trained_tiny.encode(x)
    assert torch.equal(trained_tiny.encode(x, n_q=3), full[:, :3])


def test_encode_is_deterministic_even_in_train_mode():
    m = _model()
    x = _audio(2000)
    c = m.encode(x)
    assert torch.equal(c, m.encode(x))
    m.train()
    assert torch.equal(c, m.encode(x))  # no dropout, no codebook update on the inference path


def test_batch_items_are_independent(trained_tiny):
    """An item's latents do not depend on the rest of its batch, to float rounding (a batched FFT or convolution may
    round differently from a single one on some CPUs), and neither do its codes, except at the rare near-ties that
    rounding can flip. A bug mixing batch items would move the latents by far more than the tolerance."""
    x = _audio(3200, B=3)
    with torch.no_grad(): z, codes = trained_tiny.encoder(x), trained_tiny.encode(x)
    for i in range(3):
        with torch.no_grad(): zi, ci = trained_tiny.encoder(x[i:i + 1]), trained_tiny.encode(x[i:i + 1])
        torch.testing.assert_close(zi, z[i:i + 1], rtol=1e-5, atol=1e-5)
        assert (ci != codes[i:i + 1]).float().mean() <= 0.02


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_audio(bad):
    m = _model()
    x = _audio(1000); x[0, 0, 10] = bad
    for f in (m.encode, m):
        with pytest.raises(ValueError, match="1 NaN/Inf"):
            f(x)


def test_bad_audio_shapes_and_dtypes():
    m = _model()
    with pytest.raises(ValueError, match=r"expected mono audio of shape \(B, 1, T\), got shape \(1000,\)"):
        m.encode(torch.zeros(1000))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 1000\)"):
        m.encode(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="int16"):
        m.encode(torch.zeros(1, 1, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="empty audio"):
        m.encode(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match="got ndarray"):
        m.encode(__import__("numpy").zeros((1, 1, 100)))


def test_bad_codes():
    m = _model()
    with pytest.raises(ValueError, match=r"in \[0, 1024\), got values in \[0, 1024\]"):
        m.decode(torch.tensor([[[0, 1024]]]))
    with pytest.raises(ValueError, match="got values in"):
        m.decode(torch.tensor([[[-1, 3]]]))
    with pytest.raises(ValueError, match="integer codes"):
        m.decode(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="1 ≤ n_q ≤ 12"):
        m.decode(torch.zeros(1, 13, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="expected codes shaped"):
        m.decode(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="0 < length ≤ 1280"):
        m.decode(torch.zeros(1, 3, 4, dtype=torch.long), length=2000)
    assert m.decode(torch.zeros(1, 3, 4, dtype=torch.int32)).shape == (1, 1, 1280)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_base_bf16_forward_backward_on_cuda():
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.base()).cuda().train()
    x = 0.1 * torch.randn(4, 1, 16000, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(x)
        loss = (out.audio.float() - x).abs().mean() + sum(out.losses.values())
    loss.backward()
    assert out.audio.shape == x.shape and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        codes = m.encode(x)
    assert codes.shape == (4, 12, 50) and int(codes.max()) < 1024
