"""Named sampling and crop settings that match published protocols, chosen with one flag.

A number compared with a paper is only comparable when the crops were made the same way:
DeepfakeBench samples 32 evenly spaced frames per video and crops 1.3 x the face at 256 px;
Self-Blended Images (Shiohara and Yamasaki, CVPR 2022) scores 32 frames per video on a crop
of the face box plus an eighth of its side on each side (1.25 x) at 380 px (EfficientNet-B4).
"""

from __future__ import annotations

from typing import Any

from dfpipe.core.errors import PipelineError

PRESETS: dict[str, dict[str, Any]] = {
    "dfb": {"frames": 32, "margin": 1.3, "size": 256},
    "sbi": {"frames": 32, "margin": 1.25, "size": 380},
}


def preset_values(name: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's frames/margin/size, with ``given`` (options set on the command line, None
    when left out) filling the rest; an option that contradicts the preset is refused, since
    the run would no longer match the protocol the preset names."""
    if name is None:
        return {k: v for k, v in given.items() if v is not None}
    if name not in PRESETS:
        raise PipelineError(f"--preset {name!r} is unknown: choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    if given.get("every") is not None:
        raise PipelineError(f"--preset {name} samples {values['frames']} evenly spaced frames: "
                            "leave out --every, or drop --preset")
    for key, value in given.items():
        if value is not None and key in values and value != values[key]:
            raise PipelineError(f"--preset {name} sets --{key} {values[key]}, not {value}: leave "
                                f"out --{key}, or drop --preset")
    return {**{k: v for k, v in given.items() if v is not None and k != "every"}, **values,
            "preset": name}
