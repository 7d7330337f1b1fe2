"""Appearance memory: what each object looks like, as template embeddings the kernels are predicted from.

Every object has a *trusted* entry (its prompt: the first-frame mask, or a later correction) and
a small bounded bank of recent confident frames. The network sees one combined embedding per
object; cross-correlation is linear in the kernel, so a weighted mean of the entries' kernels is
the same as averaging their correlation responses, at the cost of one.

Owner: accuracy issue (#8); prompts (#12) call :meth:`AppearanceMemory.set_trusted`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vosctl.errors import require
from vosctl.model.network import TemplateEmbedding


@dataclass(frozen=True)
class MemoryConfig:
    bank_size: int = 2  # recent confident entries kept per object besides the trusted one (0: first frame only)
    # Weight of the trusted entry (the prompt) in the combined embedding; the bank shares the rest. 0.75, not
    # 0.5: with an equal share a mask that spilled onto a look-alike enters the bank at full presence and pulls
    # the search onto it (held-out `flamingo` J 0.338 -> 0.548); neutral on the 24 training sequences under
    # input-noise replicates (model card, round 9). SAM 2 and XMem likewise keep the prompt frame always.
    trusted_weight: float = 0.75
    update_every: int = 5  # frames between bank updates
    min_confidence: float = 0.7  # presence needed for a frame to enter the bank (models with a presence head)

    def __post_init__(self) -> None:
        require(self.bank_size >= 0, f"memory.bank_size must be >= 0, got {self.bank_size}")
        weight = self.trusted_weight
        require(0.0 <= weight <= 1.0, f"memory.trusted_weight must be in [0, 1], got {weight}")
        require(self.update_every >= 1, f"memory.update_every must be >= 1, got {self.update_every}")


@dataclass
class AppearanceMemory:
    """Per-object template entries; ``combined()`` is what the network uses this frame."""

    config: MemoryConfig
    trusted: list[TemplateEmbedding]  # one (1-row) embedding per object, in object order
    bank: list[list[TemplateEmbedding]] = field(default_factory=list)
    _combined: TemplateEmbedding | None = None

    @classmethod
    def from_embedding(cls, config: MemoryConfig, embedding: TemplateEmbedding) -> AppearanceMemory:
        n = embedding.kernel.shape[0]
        trusted = [embedding.select([i]) for i in range(n)]
        return cls(config, trusted, [[] for _ in range(n)])

    def __len__(self) -> int:
        return len(self.trusted)

    def set_trusted(self, index: int, embedding: TemplateEmbedding) -> None:
        """A prompt (first frame or a correction): the object's trusted appearance; the bank restarts."""
        self.trusted[index] = embedding
        self.bank[index] = []
        self._combined = None

    def append_object(self, embedding: TemplateEmbedding) -> None:
        """A new object (an id first prompted on a later frame)."""
        self.trusted.append(embedding)
        self.bank.append([])
        self._combined = None

    def add_recent(self, index: int, embedding: TemplateEmbedding) -> None:
        """A confident recent frame of object ``index``; the oldest bank entry is dropped when full."""
        if self.config.bank_size <= 0:
            return
        entries = self.bank[index]
        entries.append(embedding)
        del entries[: max(0, len(entries) - self.config.bank_size)]
        self._combined = None

    def combined(self) -> TemplateEmbedding:
        """One embedding per object: the trusted entry and the bank's mean, weighted."""
        if self._combined is None:
            kernels, prototypes, colours = [], [], []
            for trusted, entries in zip(self.trusted, self.bank):
                kernel, prototype = trusted.kernel, trusted.prototype
                if entries:
                    w = self.config.trusted_weight
                    bank_kernel = torch.stack([e.kernel for e in entries]).mean(0)
                    bank_proto = torch.stack([e.prototype for e in entries]).mean(0)
                    kernel = w * kernel + (1 - w) * bank_kernel
                    prototype = w * prototype + (1 - w) * bank_proto
                kernels.append(kernel)
                prototypes.append(prototype)
                colours.append(trusted.colour)
            # Colour evidence (networks with NetworkConfig.colour_input) is the trusted entry's alone:
            # a prompt's mask is exact, a recent frame's may have spilled onto the background.
            colour = None if colours[0] is None else torch.cat(colours)
            self._combined = TemplateEmbedding(torch.cat(kernels), torch.cat(prototypes), colour)
        return self._combined
