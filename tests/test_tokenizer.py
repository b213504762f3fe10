import pytest
from reference_bpe import ReferenceBPE

from sdviz.tokenizer import load_tokenizer, token_info, vocabulary

PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "a red letter A on a blue background",
    "hello, world! what's up?",
    "an astronaut riding a horse on mars, 4k, trending on artstation",
    "1234567890 and 3.14159",
    "(masterpiece:1.2), best quality, ((ultra-detailed))",
    "café crème brûlée à la française",
    "東京タワー at night",
    "a 🐱 and a 🐶",
    "tabs\tand\nnewlines   and   spaces",
    "it's the dog's bone, isn't it? they'll see; we'd go",
    "&amp; html entities &lt;b&gt;",
    "under_score-hyphen/slash\\backslash",
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def ref():
    return ReferenceBPE()


def test_vocabulary_size_and_specials():
    vocab, merges = vocabulary()
    assert len(vocab) == 49408
    assert len(merges) == 49152 - 256 - 2
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


def test_sd_reference_ids(tok):
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.model_max_length == 77


@pytest.mark.parametrize("prompt", PROMPTS)
def test_parity_with_original_bpe(tok, ref, prompt):
    assert tok(prompt)["input_ids"] == [49406, *ref.encode(prompt), 49407]


def test_long_prompt_reports_truncated_tail(tok, ref):
    words = [f"word{i % 10}" if i % 3 else "cat" for i in range(100)]
    prompt = " ".join(words)
    info = token_info(prompt, tok)
    body = ref.encode(prompt)
    assert len(body) > 75
    assert info.input_ids == [49406, *body[:75], 49407]
    assert info.truncated_ids == body[75:]
    assert info.truncated == tok.convert_ids_to_tokens(body[75:])
    assert info.attention_mask == [1] * 77


def test_token_info_fields(tok):
    info = token_info("a photo of a cat", tok)
    assert len(info.input_ids) == 77 and len(info.tokens) == 77
    assert info.attention_mask == [1] * 7 + [0] * 70
    assert info.tokens[:7] == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"]
    assert info.unique == [
        ("<|startoftext|>", 49406), ("a</w>", 320), ("photo</w>", 1125), ("of</w>", 539), ("cat</w>", 2368),
        ("<|endoftext|>", 49407),
    ]
    assert info.truncated == [] and info.length == 7


def test_words_join_bpe_pieces(tok):
    info = token_info("a tabby catamaran", tok)
    words = info.words()
    assert [w for w, _ in words] == ["a", "tabby", "catamaran"]
    # every position of the prompt body is in exactly one word
    assert sorted(p for _, ps in words for p in ps) == list(range(1, info.length - 1))


def test_token_info_rejects_non_string(tok):
    with pytest.raises(TypeError, match="prompt must be a str"):
        token_info(["a", "b"], tok)


def test_long_prompt_warns_nothing(capfd):
    info = token_info(" ".join(["a very detailed painting of a cat"] * 12), load_tokenizer())  # a fresh tokenizer
    assert len(info.truncated) == 9
    assert "longer than the specified maximum" not in capfd.readouterr().err  # the truncated tail says it


def test_a_failed_build_of_the_tokenizer_folder_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    import sdviz.tokenizer as tok

    def fail(folder):
        (folder / "vocab.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tok, "write_tokenizer_files", fail)
    tok._cached_folder.cache_clear()
    try:
        with pytest.raises(OSError, match="disk full"):
            tok._cached_folder()
    finally:
        tok._cached_folder.cache_clear()  # the next caller builds it in the real temp dir
    assert list(tmp_path.iterdir()) == []
