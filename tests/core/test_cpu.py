"""CPU flags (dfpipe.core.cpu): bf16 is native only with AVX-512 BF16 or AMX."""

from __future__ import annotations

from dfpipe.core.cpu import cpu_supports_bf16


def test_bf16_flags() -> None:
    assert cpu_supports_bf16("processor : 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    assert cpu_supports_bf16("flags : fpu avx512_bf16\n")
    assert not cpu_supports_bf16("flags : fpu sse avx2 avx512f\n")
    assert not cpu_supports_bf16("")
