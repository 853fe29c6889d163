"""Property and failure tests of rotvq_audio.lm_tokens: every pattern round-trips, cut sequences decode to the
frames they hold, bad ids and shapes fail with messages that say what was expected."""
import math

import pytest
import torch
from hypothesis import given, settings, HealthCheck, strategies as st

from rotvq_audio.quantize import n_q_for_kbps
from rotvq_audio.lm_tokens import (PATTERNS, STREAM_PATTERNS, AudioTokenizer, sequence_length,
                                   token_rates)
from rotvq_audio.api import PAD_CODE, Codec

torch.set_num_threads(1)
# derandomized and without an example database: the same examples on every run, and no .hypothesis/ folder
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw, patterns=PATTERNS):
    "A tokenizer and a padded batch of random codes with random per-item lengths."
    pattern = draw(st.sampled_from(patterns))
    K, n_q = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    offset, specials = draw(st.integers(0, 5000)), draw(st.booleans())
    B, T = draw(st.integers(1, 4)), draw(st.integers(0, 12))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    codes = torch.randint(0, K, (B, n_q, T), generator=g)
    return AudioTokenizer(K, n_q, pattern, offset, specials), codes, lengths


def expected_items(tok, codes, lengths):
    return [codes[b, :tok.n_levels, :n] for b, n in enumerate(lengths)]


def assert_decodes_to(tok, ids, mask, codes, lengths, **kw):
    out, n = tok.ids_to_codes(ids, mask, **kw)
    assert n.tolist() == list(lengths)
    assert out.shape[:2] == (codes.shape[0], tok.n_levels)
    for b, want in enumerate(expected_items(tok, codes, lengths)):
        assert torch.equal(out[b, :, :want.shape[-1]], want), f"item {b} differs"
        assert (out[b, :, want.shape[-1]:] == PAD_CODE).all()


# ---------------------------------------------------------------- round trips

@SETTINGS
@given(batches())
def test_round_trip_with_mask(case):
    tok, codes, lengths = case
    ids, mask = tok.codes_to_ids(codes, lengths)
    assert_decodes_to(tok, ids, mask, codes, lengths)


@SETTINGS
@given(batches())
def test_round_trip_without_mask(case):
    "Trailing PAD (or -1 without specials) ends an item, so the mask is not needed for right-padded batches."
    tok, codes, lengths = case
    ids, _ = tok.codes_to_ids(codes, lengths)
    assert_decodes_to(tok, ids, None, codes, lengths)


@SETTINGS
@given(batches())
def test_padding_codes_mean_lengths(case):
    "Codes padded with PAD_CODE (as Codec.encode pads a batch) give the same ids as explicit lengths."
    tok, codes, lengths = case
    padded = torch.where(torch.arange(codes.shape[-1]) < torch.tensor(lengths)[:, None, None], codes, PAD_CODE)
    a, b = tok.codes_to_ids(padded), tok.codes_to_ids(codes, lengths)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    out, n = tok.ids_to_codes(*a)
    assert torch.equal(out, padded[:, :tok.n_levels, :out.shape[-1]]) and n.tolist() == lengths


@SETTINGS
@given(batches(), st.integers(0, 5))
def test_round_trip_left_padded(case, pad):
    "The mask may mark any positions as padding, e.g. left padding for batched generation."
    tok, codes, lengths = case
    ids, mask = tok.codes_to_ids(codes, lengths)
    shape = (*ids.shape[:-1], pad)
    ids = torch.cat([torch.full(shape, 7), ids], -1)
    mask = torch.cat([torch.zeros(mask.shape[0], pad, dtype=torch.bool), mask], -1)
    assert_decodes_to(tok, ids, mask, codes, lengths)


@SETTINGS
@given(batches(STREAM_PATTERNS))
def test_stream_patterns_round_trip_interleaved(case):
    tok, codes, lengths = case
    ids, mask = tok.codes_to_ids(codes, lengths)
    flat, fmask = tok.interleave(ids, mask)
    assert flat.shape == (ids.shape[0], ids.shape[1] * ids.shape[2]) == fmask.shape
    back, bmask = tok.deinterleave(flat, fmask)
    assert torch.equal(back, ids) and torch.equal(bmask, mask)
    assert_decodes_to(tok, flat, fmask, codes, lengths)


@SETTINGS
@given(batches())
def test_ids_layout(case):
    "Ids are in the vocabulary; the mask covers exactly each item's sequence_length; level k uses its own block."
    tok, codes, lengths = case
    ids, mask = tok.codes_to_ids(codes, lengths)
    assert mask.sum(1).tolist() == [sequence_length(tok.pattern, tok.n_q, n, tok.specials) for n in lengths]
    inside = mask.unsqueeze(1).expand_as(ids) if tok.is_streams else mask
    real = ids[inside]
    is_audio = (real >= tok.offset) & (real < tok.offset + tok.n_audio)
    is_special = (real >= tok.offset + tok.n_audio) & (real < tok.vocab_size)
    fill = real == tok.pad_id # only the delay pattern has empty slots inside an item
    assert (is_audio | is_special | fill).all() and (tok.pattern == "delay" or not fill.any())
    assert (ids[~inside] == tok.pad_id).all()
    assert int(is_audio.sum()) == sum(lengths) * tok.n_levels
    if tok.pattern != "first_level":
        per_level = torch.bincount((real[is_audio] - tok.offset) // tok.codebook_size, minlength=tok.n_q)
        assert per_level.tolist() == [sum(lengths)] * tok.n_q
    else: assert (real[is_audio] < tok.offset + tok.codebook_size).all()


def test_first_level_accepts_one_level_and_returns_one():
    tok = AudioTokenizer(8, 4, "first_level")
    codes = torch.randint(0, 8, (2, 4, 5))
    a, _ = tok.codes_to_ids(codes)
    b, _ = tok.codes_to_ids(codes[:, :1])
    assert torch.equal(a, b)
    out, n = tok.ids_to_codes(a)
    assert out.shape == (2, 1, 5) and torch.equal(out, codes[:, :1]) and n.tolist() == [5, 5]


def test_empty_batch_and_empty_items():
    for p in PATTERNS:
        tok = AudioTokenizer(5, 3, p)
        ids, mask = tok.codes_to_ids(torch.zeros(2, 3, 0, dtype=torch.long))
        out, n = tok.ids_to_codes(ids, mask)
        assert out.shape == (2, tok.n_levels, 0) and n.tolist() == [0, 0]


# ---------------------------------------------------------------- cut at any point

def complete_frames(tok, T, cut):
    "How many frames have all their ids before position `cut` (an independent count of the layout)."
    first = int(tok.specials) # BOA
    last_pos = {"flatten": lambda t: first + (t + 1) * tok.n_q - 1, "delay": lambda t: first + t + tok.n_q - 1}
    end = last_pos.get(tok.pattern, lambda t: first + t)
    return sum(end(t) < cut for t in range(T))


def partial_frames(tok, T, cut):
    "Frames with some but not all of their ids before `cut`."
    first = int(tok.specials)
    if tok.pattern == "flatten": starts = lambda t: first + t * tok.n_q
    elif tok.pattern == "delay": starts = lambda t: first + t
    else: return 0
    return sum(starts(t) < cut for t in range(T)) - complete_frames(tok, T, cut)


@SETTINGS
@given(batches(), st.data())
def test_cut_at_any_point(case, data):
    "A sequence cut anywhere decodes (drop_partial=True) to the frames it fully holds; strict mode fails exactly when a frame is unfinished."
    tok, codes, _ = case
    codes = codes[:1]
    T = codes.shape[-1]
    ids, _ = tok.codes_to_ids(codes)
    cut = data.draw(st.integers(0, ids.shape[-1]), label="cut")
    part = ids[..., :cut]
    n = complete_frames(tok, T, cut)
    assert_decodes_to(tok, part, None, codes, [n], drop_partial=True)
    if partial_frames(tok, T, cut):
        with pytest.raises(ValueError, match="drop_partial=True"): tok.ids_to_codes(part)
    else:
        assert_decodes_to(tok, part, None, codes, [n])


@SETTINGS
@given(batches(STREAM_PATTERNS), st.data())
def test_cut_interleaved_streams_at_any_id(case, data):
    "Step-interleaved streams cut mid-step: the unfinished step never holds a complete frame."
    tok, codes, _ = case
    codes = codes[:1]
    flat, _ = tok.interleave(tok.codes_to_ids(codes)[0])
    cut = data.draw(st.integers(0, flat.shape[-1]), label="cut")
    n = complete_frames(tok, codes.shape[-1], cut // tok.n_q)
    assert_decodes_to(tok, flat[:, :cut], None, codes, [n], drop_partial=True)
    if cut % tok.n_q:
        with pytest.raises(ValueError, match="unfinished step"): tok.ids_to_codes(flat[:, :cut])


@SETTINGS
@given(batches(), st.data())
def test_generated_tail_after_eoa_is_ignored(case, data):
    "Whatever a model emits after EOA does not reach the codes."
    tok, codes, lengths = case
    if not tok.specials: return
    ids, mask = tok.codes_to_ids(codes, lengths)
    junk = torch.randint(0, tok.vocab_size, (*ids.shape[:-1], data.draw(st.integers(1, 6))))
    ids = torch.cat([ids.masked_fill(~(mask[:, None] if tok.is_streams else mask), tok.eoa_id), junk], -1)
    assert_decodes_to(tok, ids, None, codes, lengths)


@pytest.mark.parametrize("stream", [0, 1, 2])
def test_eoa_on_any_stream_ends_the_delayed_item(stream):
    "A model may emit EOA on one stream only; the item ends at that step, keeping the frames complete before it."
    tok = AudioTokenizer(8, 3, "delay")
    codes = torch.randint(0, 8, (1, 3, 6))
    ids, _ = tok.codes_to_ids(codes)
    ids[0, stream, 6] = tok.eoa_id # step 6 = BOA + 5 steps: frames 0..3 are complete before it
    out, n = tok.ids_to_codes(ids, drop_partial=True)
    assert n.tolist() == [3] and torch.equal(out, codes[..., :3])


# ---------------------------------------------------------------- errors

@SETTINGS
@given(batches(), st.data())
def test_foreign_id_in_audio_fails(case, data):
    "An id that is not a code of its level (another level, text, a special, past the vocabulary) fails, naming the item."
    tok, codes, lengths = case
    if sum(lengths) == 0: return
    ids, mask = tok.codes_to_ids(codes, lengths)
    b = data.draw(st.sampled_from([i for i, n in enumerate(lengths) if n]), label="item")
    audio_pos = ((ids[b] >= tok.offset) & (ids[b] < tok.offset + tok.n_audio)).nonzero()
    pos = tuple(audio_pos[data.draw(st.integers(0, len(audio_pos) - 1), label="pos")].tolist())
    level = (int(ids[b][pos]) - tok.offset) // tok.codebook_size
    choices = [tok.offset + tok.n_audio + 3, tok.offset - 1 if tok.offset else tok.vocab_size + 10, -5]
    if tok.n_q > 1: choices.append(tok.offset + ((level + 1) % tok.n_q) * tok.codebook_size) # another level's code
    if tok.specials: choices += [tok.boa_id, tok.pad_id]
    bad = ids.clone(); bad[(b, *pos)] = data.draw(st.sampled_from(choices), label="new id")
    with pytest.raises(ValueError, match=rf"item {b}: expected a level-\d+ audio id in \["):
        tok.ids_to_codes(bad, mask)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pad_before_eoa_fails(pattern):
    "PAD ends an item only where there is no EOA; before an EOA it is a foreign id, not a shorter item."
    tok = AudioTokenizer(8, 2, pattern)
    ids, mask = tok.codes_to_ids(torch.randint(0, 8, (1, 2, 3)))
    ids[..., -2] = tok.pad_id # the last step before EOA
    with pytest.raises(ValueError, match=r"item 0: expected a level-\d audio id .* \(PAD\)"): tok.ids_to_codes(ids, mask)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_shape_mismatch_fails(pattern):
    tok = AudioTokenizer(16, 3, pattern)
    with pytest.raises(ValueError, match=r"expected codes of shape \(B, n_q, T\) with n_q = 3"):
        tok.codes_to_ids(torch.zeros(1, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected codes shaped \(B, n_q, N\)"): tok.codes_to_ids(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected codes in \[0, 16\) \(or -1 as padding\), got values in \[16, 16\]"):
        tok.codes_to_ids(torch.full((1, 3, 4), 16))
    with pytest.raises(ValueError, match="expected integer codes"): tok.codes_to_ids(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="-1 only as padding after an item's last frame"): tok.codes_to_ids(torch.tensor([[[0, -1, 0]] * 3]))
    with pytest.raises(ValueError, match="-1 only as padding after an item's last frame"): tok.codes_to_ids(torch.tensor([[[0, 0, -1]] * 3]), lengths=[3])
    with pytest.raises(ValueError, match=r"values in \[-2, 0\]"): tok.codes_to_ids(torch.tensor([[[0, -2]] * 3]))
    with pytest.raises(ValueError, match=r"expected lengths to be 1 integers in \[0, 4\]"):
        tok.codes_to_ids(torch.zeros(1, 3, 4, dtype=torch.long), lengths=[5])
    ids, mask = tok.codes_to_ids(torch.zeros(2, 3, 4, dtype=torch.long))
    wrong = ids[:, 0] if tok.is_streams else ids[:, None].expand(2, 3, -1) # the other family's shape
    if tok.is_streams: # a 2-D tensor is read as interleaved streams, so give a wrong stream count instead
        wrong = torch.zeros(2, 2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=rf"expected ids as .* for pattern '{pattern}'"): tok.ids_to_codes(wrong)
    with pytest.raises(ValueError, match="bool mask of shape"): tok.ids_to_codes(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="bool mask of shape"): tok.ids_to_codes(ids, mask.long())
    with pytest.raises(ValueError, match="expected integer ids"): tok.ids_to_codes(ids.float())


def test_constructor_and_bitrate_errors():
    with pytest.raises(ValueError, match="expected pattern to be one of"): AudioTokenizer(16, 3, "valle")
    with pytest.raises(ValueError, match="offset to be an integer ≥ 0"): AudioTokenizer(16, 3, offset=-1)
    with pytest.raises(ValueError, match="codebook_size to be an integer ≥ 1"): AudioTokenizer(0, 3)
    with pytest.raises(ValueError, match="among 0.5, 1, 1.5"): n_q_for_kbps(2.25, 1024, 50, 12)
    assert [n_q_for_kbps(k, 1024, 50, 12) for k in (0.5, 1.5, 3, 6)] == [1, 3, 6, 12]
    with pytest.raises(ValueError, match="among"): n_q_for_kbps(6, 1024, 50, max_n_q=6)
    with pytest.raises(ValueError, match="expected pattern"): sequence_length("zigzag", 3, 10)


def test_token_rate_table():
    rows = {(r["kbps"], r["pattern"]): r for r in token_rates()}
    assert len(rows) == 12
    for kbps, n_q in ((1.5, 3), (3.0, 6), (6.0, 12)):
        assert rows[kbps, "flatten"]["positions_per_s"] == rows[kbps, "flatten"]["ids_per_s"] == 50 * n_q
        for p in STREAM_PATTERNS: assert (rows[kbps, p]["positions_per_s"], rows[kbps, p]["ids_per_s"]) == (50, 50 * n_q)
        assert rows[kbps, "first_level"]["ids_per_s"] == 50
        tok = AudioTokenizer(1024, n_q, "delay")
        assert rows[kbps, "delay"]["positions_10s"] == tok.codes_to_ids(torch.zeros(1, n_q, 500, dtype=torch.long))[0].shape[-1]


# ---------------------------------------------------------------- with a codec

@pytest.fixture(scope="module")
def tiny_model():
    from rotvq_audio.codec import CodecModel, CodecConfig
    torch.manual_seed(0)
    return CodecModel(CodecConfig.tiny(n_q=4, codebook_size=32)).eval()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_audio_ids_audio_equals_audio_codes_audio(tiny_model, pattern):
    tok = AudioTokenizer.from_codec(tiny_model, pattern, kbps=0.75) # 3 levels × 5 bits × 50 Hz
    assert tok.n_q == 3 and tok.codebook_size == 32
    g = torch.Generator().manual_seed(3)
    audio = 0.1 * torch.randn(3, 1, 3000, generator=g)
    ids, mask = tok.encode(audio, 16000, lengths=[3000, 700, 2000])
    codes = tiny_model.encode(audio, n_q=tok.n_levels)
    out = tok.decode(ids, mask)
    for b, frames in enumerate((10, 3, 7)):
        assert torch.equal(out[b, :, :frames * 320], tiny_model.decode(codes[b:b + 1, :, :frames])[0])
        assert (out[b, :, frames * 320:] == 0).all()


def test_codec_errors(tiny_model):
    with pytest.raises(ValueError, match="codebook_size 1024 and at least 3 levels, got codebook_size 32 and 4"):
        AudioTokenizer(1024, 3, codec=tiny_model)
    with pytest.raises(ValueError, match="with a codec for encode"): AudioTokenizer(32, 3).encode(torch.zeros(1, 1, 10), 16000)
    with pytest.raises(ValueError, match="with a codec for decode"): AudioTokenizer(32, 3).decode(torch.zeros(1, 3, 4, dtype=torch.long))
    tok = AudioTokenizer.from_codec(tiny_model, "flatten")
    with pytest.raises(ValueError, match="16000 Hz, got 8000 Hz"): tok.encode(torch.zeros(1, 1, 800), 8000)



@pytest.mark.parametrize("pattern", PATTERNS)
def test_public_codec_clips_of_any_length(tiny_model, pattern):
    "With the public Codec: resampled clips of different lengths, each item as if encoded and decoded alone."
    codec = Codec(tiny_model)
    tok = AudioTokenizer.from_codec(codec, pattern, kbps=0.5) # 2 levels × 5 bits × 50 Hz
    g = torch.Generator().manual_seed(1)
    clips = [0.1 * torch.randn(n, generator=g) for n in (4410, 1000, 2205)] # at 44.1 kHz
    ids, mask = tok.encode(clips, 44100)
    codes, n = tok.ids_to_codes(ids, mask)
    assert torch.equal(codes, codec.encode(clips, 44100, n_q=tok.n_levels))
    audio = tok.decode(ids, mask)
    for b, clip in enumerate(clips):
        alone = codec.decode(codec.encode(clip, 44100, n_q=tok.n_levels))[0]
        assert n[b] == codec.num_frames(len(clip), 44100)
        assert torch.equal(audio[b, :, :alone.shape[-1]], alone) and (audio[b, :, alone.shape[-1]:] == 0).all()
