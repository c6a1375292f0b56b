"""One ICU stay as recorded data, independent of the data set it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Measurement", "Stay", "Label"]


@dataclass(frozen=True, slots=True)
class Measurement:
    """Observations charted together, ``hours`` after ICU admission."""

    hours: float
    observations: tuple[tuple[str, float, str, str | None], ...]  # code, value, unit, method


@dataclass(frozen=True, slots=True)
class Label:
    """An outcome for ``hours`` after admission that becomes known ``known_hours`` after it."""

    kind: str  # "sepsis" | "death"
    hours: float
    label: int
    known_hours: float


@dataclass
class Stay:
    dataset: str  # "physionet2019" | "physionet2012"
    source_id: str  # the data set's own id: never leaves the replay (pseudonymised)
    unit: str
    age_years: float | None
    sex: str | None
    hospital_admit_hours: float | None  # negative: hospital admission before ICU admission
    measurements: list[Measurement] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    unmapped: int = 0  # values of parameters Vigil has no code for (weight, height ...)

    @property
    def end_hours(self) -> float:
        return max((m.hours for m in self.measurements), default=0.0)

    @property
    def septic(self) -> bool:
        return any(lb.kind == "sepsis" and lb.label for lb in self.labels)
