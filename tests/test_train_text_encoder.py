import torch
from transformers import CLIPTextConfig, CLIPTextModel

from sdviz.tokenizer import load_tokenizer
from sdviz.train.data import COLORS
from sdviz.train.text_encoder import SLOTS, TextEncoderConfig, pretrain_text_encoder, token_targets


def test_token_targets_name_what_each_phrase_has_said_so_far():
    tok = load_tokenizer()
    ids, targets, end = token_targets(("A", "red", "blue"), tok)
    assert ids == tok("a red letter A on a blue background", padding="max_length", max_length=77).input_ids
    assert end == 9 and len(ids) == 77
    red, blue = 1 + COLORS.index("red"), 1 + COLORS.index("blue")
    # <sot> a red letter A on a blue background <eot> <pad>...
    assert targets["fg"][:10] == [0, 0, red, red, red, 0, 0, 0, 0, 0]
    assert targets["kind"][:10] == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert targets["char"][:10] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert targets["bg"][:10] == [0, 0, 0, 0, 0, 0, 0, blue, blue, 0]
    assert all(targets[s][end:] == [0] * (77 - end) for s in SLOTS)
    _, digit, _ = token_targets(("7", "black", "white"), tok)
    assert digit["kind"][3] == 2 and digit["char"][4] == 1 + 26 + 7


def test_pretraining_makes_words_carry_their_slots_and_padding_carry_nothing(tmp_path):
    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77, projection_dim=32))  # fmt: skip
    cfg = TextEncoderConfig(steps=150, batch_size=32, lr=3e-3, warmup=5, checkpoint_every=150, threads=1)
    te = pretrain_text_encoder(te, tmp_path, cfg, progress=False)
    assert not any(p.requires_grad for p in te.parameters()) and not te.training
    tok = load_tokenizer()
    prompts = ["a red letter A on a blue background", "a green digit 3 on a white background", ""]
    h = te(tok(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids)[0].detach()
    pad_spread = (h[0, 20:] - h[2, 20:]).norm(dim=-1).mean() / h[2, 20:].norm(dim=-1).mean()
    word_spread = (h[0, 2] - h[1, 2]).norm() / h[1, 2].norm()  # "red" vs "green"
    assert pad_spread < 0.05 < word_spread  # padding is the same for every prompt; colour words differ
