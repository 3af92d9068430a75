"""hardware.py: the one place that names the machine, reads the CPU's features and the GPU."""

from __future__ import annotations

import pytest

from whisper_eas import hardware


@pytest.fixture
def fake_cpuinfo(tmp_path, monkeypatch):
    def write(flags: str):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n")
        monkeypatch.setattr(hardware, "CPUINFO", str(path))
        hardware.cpu_name.cache_clear()
        hardware.cpu_flags.cache_clear()

    yield write
    hardware.cpu_name.cache_clear()
    hardware.cpu_flags.cache_clear()


def test_cpu_name_and_flags_come_from_proc_cpuinfo(fake_cpuinfo):
    fake_cpuinfo("fpu sse2 avx2 avx512f")
    assert hardware.cpu_name() == "Test CPU 9000"
    assert hardware.cpu_flags() == {"fpu", "sse2", "avx2", "avx512f"}


@pytest.mark.parametrize("flags, native", [("avx2 avx512f", False), ("avx512f avx512_bf16", True),
                                           ("amx_bf16 amx_tile", True), ("amx_tile", True)])
def test_native_bfloat16_needs_avx512_bf16_or_amx(fake_cpuinfo, flags, native):
    fake_cpuinfo(flags)
    assert hardware.has_native_bf16() is native


def test_an_unreadable_cpuinfo_gives_no_flags_and_the_platform_name(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", str(tmp_path / "missing"))
    hardware.cpu_name.cache_clear()
    hardware.cpu_flags.cache_clear()
    try:
        assert hardware.cpu_flags() == frozenset() and not hardware.has_native_bf16()
        assert hardware.cpu_name()  # platform.processor() or the machine type
    finally:
        hardware.cpu_name.cache_clear()
        hardware.cpu_flags.cache_clear()


def test_the_machine_description_names_cpu_cores_threads_and_torch(fake_cpuinfo):
    import torch

    fake_cpuinfo("avx2")
    text = hardware.describe("cpu", threads=3)
    assert text.startswith("Test CPU 9000, ") and ", 3 threads, " in text and f"torch {torch.__version__}" in text
    assert hardware.cuda_name("cpu") is None
