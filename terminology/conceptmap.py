"""Indexed R4 ConceptMaps for ``$translate``, forward (source -> target) and reverse."""

from __future__ import annotations

from dataclasses import dataclass

#: What an equivalence becomes when a map is read backwards (target -> source).
_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes", "specializes": "subsumes"}
#: Equivalences that mean "no usable match" (R4 ConceptMapEquivalence).
NON_MATCHES = frozenset({"unmatched", "disjoint"})


@dataclass(frozen=True, slots=True)
class Match:
    system: str | None
    code: str | None
    display: str | None
    equivalence: str
    comment: str | None = None


def source_of(cm: dict) -> str | None:
    return cm.get("sourceUri") or cm.get("sourceCanonical")


def target_of(cm: dict) -> str | None:
    return cm.get("targetUri") or cm.get("targetCanonical")


class ConceptMapIndex:
    def __init__(self, cm: dict):
        self.url: str = cm["url"]
        self.version: str | None = cm.get("version")
        self._forward: dict[tuple[str | None, str], list[Match]] = {}
        self._reverse: dict[tuple[str | None, str], list[Match]] = {}
        self._unmapped: list[tuple[str | None, str | None, dict]] = []
        for group in cm.get("group", []):
            src, tgt = group.get("source"), group.get("target")
            for element in group.get("element", []):
                code = element.get("code")
                for t in element.get("target", []):
                    eq = t.get("equivalence", "equivalent")
                    self._forward.setdefault((src, code), []).append(Match(tgt, t.get("code"), t.get("display"), eq, t.get("comment")))
                    if t.get("code"):
                        self._reverse.setdefault((tgt, t["code"]), []).append(
                            Match(src, code, element.get("display"), _REVERSED.get(eq, eq), t.get("comment"))
                        )
            if group.get("unmapped"):
                self._unmapped.append((src, tgt, group["unmapped"]))

    def translate(self, system: str | None, code: str, reverse: bool = False) -> list[Match]:
        """Matches for ``code`` (any system when ``system`` is None), falling back to a group's ``unmapped``."""
        table = self._reverse if reverse else self._forward
        found = list(table.get((system, code), [])) if system is not None else [m for (_, c), ms in table.items() if c == code for m in ms]
        if found or reverse:
            return found
        for src, tgt, unmapped in self._unmapped:
            if system is not None and src not in (None, system):
                continue
            mode = unmapped.get("mode")
            if mode == "provided":
                found.append(Match(tgt, code, None, "equal"))
            elif mode == "fixed":
                found.append(Match(tgt, unmapped.get("code"), unmapped.get("display"), "equivalent"))
        return found
