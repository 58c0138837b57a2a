"""Evaluation throughput: lm-eval's Hugging Face model, counting the tokens the model reads per task.

``CountingLM`` is lm-eval's ``HFLM`` plus a counter: ``tokens`` grows by the input length of every
log-likelihood request it scores (context + continuation, less the last token, truncated to the
model's length exactly as HFLM truncates it; rolling windows of bits-per-byte tasks included) and by
the prompt + generated positions of every generation batch. The harness resets it per task and
records ``tokens`` and ``tokens / seconds`` in each ``Score``. Requests whose logits lm-eval reuses
(one-token continuations sharing a context) still count once each: the figure is work asked for.

Example:
    >>> CountingLM.request_tokens([(("a", "b"), [1, 2, 3], [4, 5])], max_length=2048)
    4
    >>> CountingLM.request_tokens([(("a", "b"), [1] * 10, [2] * 5)], max_length=8)
    8
"""

from __future__ import annotations

from lm_eval import utils
from lm_eval.models.huggingface import HFLM


class CountingLM(HFLM):
    """``HFLM`` that counts the tokens it evaluates in ``tokens`` (reset it before a task)."""

    tokens: int = 0

    @staticmethod
    def request_tokens(requests, max_length: int) -> int:
        """Tokens the model reads for log-likelihood ``requests`` ((strings), context ids, continuation ids)."""
        return sum(min(len(context) + len(continuation), max_length + 1) - 1
                   for _, context, continuation in requests)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        self.tokens += self.request_tokens(requests, self.max_length)
        return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """lm-eval's rolling log-likelihood, but every document's windows go through one length-sorted pass:
        batches hold windows of similar length (lm-eval batches them in document order, padding short
        ones to the longest of each batch). Same windows, same sums; one process only."""
        if self.world_size > 1:
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        windows, owners = [], []
        for index, request in enumerate(requests):
            for window in utils.get_rolling_token_windows(token_list=self.tok_encode(request.args[0]),
                                                          prefix_token=self.prefix_token_id,
                                                          max_seq_len=self.max_length, context_len=1):
                windows.append((None, *utils.make_disjoint_window(window)))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (loglikelihood, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm=True)):
            totals[owner] += loglikelihood
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        self.tokens += int(out.numel())
        return out
