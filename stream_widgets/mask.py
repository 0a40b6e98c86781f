"""`StreamMask`: a per-head sparse block mask, laid out like FlexAttention's `BlockMask`.

For every (batch, query head, query block) the mask stores how many key blocks are kept
(`kv_num_blocks`) and which (`kv_indices`, ascending, padded with 0 past the count). Inside a kept block
the usual token-level causal rule applies, so the diagonal blocks are partial. Memory is
B x H x (T / q_block) x max_blocks_per_row integers: O(T), never T x T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StreamMask"]

# to_dense() builds B x H x T x T booleans; refuse sizes where that is no longer a small debugging aid.
_DENSE_LIMIT = 16_384


@dataclass(frozen=True, eq=False)
class StreamMask:
    """Kept key blocks per (batch, head, query block).

    Attributes:
        kv_num_blocks: int32 ``[B, H, Qb]``, kept key blocks per query block.
        kv_indices: int32 ``[B, H, Qb, K]``, the kept key-block indices, ascending; entries at positions
            >= ``kv_num_blocks`` are padding (0).
        q_block: Queries per query block.
        k_block: Keys per key block.
        seq_len: Sequence length T (queries = keys; the last blocks may be partial).
    """

    kv_num_blocks: torch.Tensor
    kv_indices: torch.Tensor
    q_block: int
    k_block: int
    seq_len: int

    def __post_init__(self) -> None:
        b, h, qb = self.kv_num_blocks.shape
        assert self.kv_indices.shape[:3] == (b, h, qb), "kv_indices and kv_num_blocks disagree"
        assert qb == self.num_q_blocks, "query-block count does not match seq_len / q_block"

    # ----------------------------------------------------------------- shape facts
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, H, T, T)``: the shape of the attention mask this stands for."""
        b, h, _ = self.kv_num_blocks.shape
        return (b, h, self.seq_len, self.seq_len)

    @property
    def num_q_blocks(self) -> int:
        return -(-self.seq_len // self.q_block)

    @property
    def num_k_blocks(self) -> int:
        return -(-self.seq_len // self.k_block)

    @property
    def device(self) -> torch.device:
        return self.kv_indices.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the mask's tensors."""
        return sum(t.numel() * t.element_size() for t in (self.kv_num_blocks, self.kv_indices))

    def to(self, device: torch.device | str) -> StreamMask:
        """The same mask on another device."""
        return StreamMask(
            self.kv_num_blocks.to(device),
            self.kv_indices.to(device),
            self.q_block,
            self.k_block,
            self.seq_len,
        )

    def equal(self, other: StreamMask) -> bool:
        """True when both masks keep exactly the same blocks."""
        return (
            (self.q_block, self.k_block, self.seq_len) == (other.q_block, other.k_block, other.seq_len)
            and torch.equal(self.kv_num_blocks.cpu(), other.kv_num_blocks.cpu())
            and torch.equal(self._padded_indices().cpu(), other._padded_indices().cpu())
        )

    def _padded_indices(self) -> torch.Tensor:
        """kv_indices with padding set to -1, so masks of different widths compare equal."""
        width = self.kv_indices.shape[-1]
        valid = torch.arange(width, device=self.device) < self.kv_num_blocks[..., None]
        return torch.where(valid, self.kv_indices, -1)

    def valid(self) -> torch.Tensor:
        """bool ``[B, H, Qb, K]``: which entries of `kv_indices` are kept blocks, not padding."""
        width = self.kv_indices.shape[-1]
        return torch.arange(width, device=self.device) < self.kv_num_blocks[..., None]

    # ----------------------------------------------------------------- counts
    def retained_pairs(self) -> torch.Tensor:
        """int64 ``[B, H, Qb]``: causal (query, key) pairs kept for each query block.

        Cost O(B x H x Qb x K); nothing of size T x T.
        """
        qb, kb, t = self.q_block, self.k_block, self.seq_len
        rows = torch.arange(self.num_q_blocks, device=self.device, dtype=torch.int64)
        q_start = (rows * qb)[None, None, :, None]
        q_end = torch.clamp((rows + 1) * qb, max=t)[None, None, :, None]
        k_start = self.kv_indices.to(torch.int64) * kb
        k_end = torch.clamp(k_start + kb, max=t)
        # Keys in [k_start, k_end) seen by query q: clamp(min(k_end, q + 1) - k_start, 0, k_block).
        # Summed over q in [q_start, q_end): queries before k_start see nothing, queries past
        # k_end - 1 see the whole block, and in between the count grows by one per query.
        lo = torch.maximum(q_start, k_start)  # first query that sees any key of the block
        hi = torch.minimum(q_end, k_end)  # queries in [lo, hi) see a growing prefix
        ramp_n = torch.clamp(hi - lo, min=0)
        ramp_first = lo - k_start + 1
        ramp = ramp_n * ramp_first + ramp_n * (ramp_n - 1) // 2
        full_n = torch.clamp(q_end - torch.maximum(k_end, q_start), min=0)
        full = full_n * (k_end - k_start)
        per_block = torch.where(self.valid(), ramp + full, 0)
        return per_block.sum(-1)

    def causal_pairs(self) -> int:
        """T (T + 1) / 2: the pairs of a full causal mask."""
        return self.seq_len * (self.seq_len + 1) // 2

    def sparsity(self, per_head: bool = False) -> torch.Tensor:
        """Share of causal (query, key) pairs the mask drops: 1 - retained / (T (T + 1) / 2).

        Args:
            per_head: If True return float ``[B, H]``, else a scalar over all batches and heads.
        """
        retained = self.retained_pairs().sum(-1).to(torch.float64)
        if per_head:
            return 1.0 - retained / self.causal_pairs()
        return 1.0 - retained.mean() / self.causal_pairs()

    # ----------------------------------------------------------------- conversions
    def to_block_dense(self) -> torch.Tensor:
        """bool ``[B, H, Qb, Kb]``: which key blocks each query block keeps. O(T^2 / blocks) memory."""
        b, h, qn = self.kv_num_blocks.shape
        dense = torch.zeros(b, h, qn, self.num_k_blocks + 1, dtype=torch.bool, device=self.device)
        index = torch.where(self.valid(), self.kv_indices.to(torch.int64), self.num_k_blocks)
        dense.scatter_(-1, index, True)
        return dense[..., :-1]

    def to_dense(self) -> torch.Tensor:
        """bool ``[B, H, T, T]``: the token-level mask (kept block and causal). Small T only.

        Raises:
            ValueError: If T > 16,384, where this would allocate B x H x T x T booleans.
        """
        if self.seq_len > _DENSE_LIMIT:
            raise ValueError(
                f"to_dense() would allocate {self.seq_len}x{self.seq_len} per head; it is meant for "
                f"T <= {_DENSE_LIMIT}. Use kv_indices / to_block_mask() for long sequences."
            )
        t = self.seq_len
        blocks = self.to_block_dense()
        dense = blocks.repeat_interleave(self.q_block, dim=2)[:, :, :t]
        dense = dense.repeat_interleave(self.k_block, dim=3)[..., :t]
        causal = torch.ones(t, t, dtype=torch.bool, device=self.device).tril()
        return dense & causal

    def to_block_mask(self):
        """The same mask as a `torch.nn.attention.flex_attention.BlockMask`.

        Usable with `flex_attention(q, k, v, block_mask=...)` for attention over exactly the kept blocks.
        Its `mask_mod` is causal and also looks the block up in the kept-block table, so paths that
        evaluate `mask_mod` densely (eager flex_attention on CPU) agree with the block-sparse kernels.
        The BlockMask layout needs ``[B, H, Qb, Kb]`` entries, i.e. O(T^2 / blocks) ints.
        """
        from torch.nn.attention.flex_attention import BlockMask

        kept = self.to_block_dense()
        q_block, k_block = self.q_block, self.k_block

        def kept_and_causal(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & kept[b, h, q_idx // q_block, kv_idx // k_block]

        b, h, qn = self.kv_num_blocks.shape
        # BlockMask wants one column per key block; kept blocks come first and never outnumber them.
        width = min(self.num_k_blocks, self.kv_indices.shape[-1])
        indices = torch.zeros(b, h, qn, self.num_k_blocks, dtype=torch.int32, device=self.device)
        indices[..., :width] = torch.where(self.valid(), self.kv_indices, 0)[..., :width]
        return BlockMask.from_kv_blocks(
            self.kv_num_blocks.to(torch.int32),
            indices,
            BLOCK_SIZE=(q_block, k_block),
            mask_mod=kept_and_causal,
            seq_lengths=(self.seq_len, self.seq_len),
        )

    # ----------------------------------------------------------------- display
    def __repr__(self) -> str:
        b, h, qn = self.kv_num_blocks.shape
        kept = self.kv_num_blocks.to(torch.float32)
        return (
            f"StreamMask(shape=(B={b}, H={h}, T={self.seq_len}), q_block={self.q_block}, "
            f"k_block={self.k_block}, query_blocks={qn}, key_blocks={self.num_k_blocks}, "
            f"kept_blocks_per_row={kept.mean().item():.1f} (max {int(kept.max().item()) if kept.numel() else 0}), "
            f"sparsity={self.sparsity().item():.2%}, nbytes={self.nbytes:,}, device={self.device})"
        )
