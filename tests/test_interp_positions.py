import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.interp.positions import gather, n_positions, post_instruction_count
from refusalscope.models.tiny import tiny_handle


def test_post_instruction_count_matches_chatml_suffix():
    h = tiny_handle("qwen2")
    n = post_instruction_count(h)
    text = h.format_prompt("Write a poem.")
    ids = h.tokenizer(text, add_special_tokens=False)["input_ids"]
    tail = h.tokenizer.decode(ids[-n:])
    assert tail == "<|im_end|>\n<|im_start|>assistant\n"
    assert "poem" not in tail


@pytest.mark.parametrize("side", ["left", "right"])
def test_gather_picks_last_real_tokens_for_either_padding(side):
    acts = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    if side == "left":
        mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    else:
        mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    last_real = [4, 4] if side == "left" else [2, 4]
    got = gather(acts, mask, "post-instruction", 2)
    assert got.shape == (2, 2, 3)
    for b in range(2):
        assert torch.equal(got[b, 1], acts[b, last_real[b]])
        assert torch.equal(got[b, 0], acts[b, last_real[b] - 1])
    assert torch.equal(gather(acts, mask, "last", 2)[:, 0], got[:, 1])
    mean = gather(acts, mask, "mean", 2)[:, 0]
    assert torch.allclose(mean[0], acts[0][mask[0].bool()].mean(0))


def test_unknown_kind_is_user_error():
    with pytest.raises(UserError, match="unknown position"):
        n_positions("first", 3)


def test_fingerprint_changes_with_weights_not_with_reload():
    from refusalscope.interp.identity import model_fingerprint

    a, b = tiny_handle("qwen2", seed=0), tiny_handle("qwen2", seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(tiny_handle("qwen2", seed=1))
    with torch.no_grad():
        next(p for p in b.layers[-1].parameters() if p.dim() == 2)[0, 0] += 1.0
    assert model_fingerprint(a) != model_fingerprint(b)
