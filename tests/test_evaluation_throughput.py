"""The held-out (rolling) log-likelihood path: one length-sorted pass over every document's windows."""

from __future__ import annotations

import pytest
from helpers.evaluation import TEXT, tiny_lm
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from wsm_exp.evaluation.throughput import CountingLM


class Positions(CountingLM):
    """Counts the positions (padding included) of every forward pass."""

    positions = 0

    def _model_call(self, inps, *args, **kwargs):
        self.positions += inps.numel()
        return super()._model_call(inps, *args, **kwargs)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = tiny_lm(tmp_path_factory.mktemp("lm") / "model")
    return Positions(pretrained=str(folder), tokenizer=str(folder), batch_size=2, dtype="float32", device="cpu")


def test_windows_of_all_documents_are_batched_by_length_with_the_same_loglikelihoods(lm):
    texts = [" ".join(TEXT[:n]) for n in (1, 12, 2, 11, 3, 13)]  # short and long documents alternate
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    lengths = sorted((len(lm.tok_encode(t)) for t in texts), reverse=True)
    lm.positions, lm.tokens = 0, 0
    sorted_pass = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    assert lm.tokens == sum(lengths)
    assert lm.positions == sum(2 * lengths[i] for i in range(0, len(lengths), 2))  # pairs of similar length
    sorted_positions, lm.positions = lm.positions, 0
    in_order = HFLM.loglikelihood_rolling(lm, requests, disable_tqdm=True)  # lm-eval's own: document order
    in_doc_order = [len(lm.tok_encode(t)) for t in texts]
    assert lm.positions == sum(2 * max(in_doc_order[i:i + 2]) for i in range(0, len(texts), 2)) > sorted_positions
    assert sorted_pass == pytest.approx(in_order, rel=1e-5)
