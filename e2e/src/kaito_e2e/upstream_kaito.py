"""KAITO v0.12's published Workspaces (``e2e/tests/data/upstream-kaito``) and what we expect of
each: the same verdict as KAITO's admission, except the differences listed here.

Why: a user moving from KAITO applies its examples and docs first. The corpus records, per
manifest, what KAITO's own webhook does (``README.md``'s table) and what it needs in the cluster
(``valid-scenarios.json``: ConfigMaps, Secrets, feature gates). The e2e test applies each file to
a real API server with the controller's webhook in the path, and the controller's unit test runs
the webhook's function on the same files; both take their expectations from :data:`DIFFERENCES`,
so a difference from KAITO is declared once, with its reason and the field our refusal names.
Pure data: no cluster, no Kubernetes client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "CORPUS",
    "DIFFERENCES",
    "NAMESPACE",
    "Difference",
    "Manifest",
    "manifests",
]

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "upstream-kaito"
NAMESPACE = "default"  # where KAITO's verdicts were taken; the e2e test uses fresh namespaces
_ROW = re.compile(r"^\| (\d\d-[^|]+\.yaml) \|.*\| ([^|]*) \|$")


@dataclass(frozen=True)
class Difference:
    """A manifest KAITO admits and we refuse.

    Attributes:
        field: The field our refusal names (a prefix of the error's path).
        kind: ``deliberate`` (we refuse on purpose; the user guide's migration section says
            why) or ``gap`` (not supported yet; the user guide says so too).
        why: One line for the test report.
    """

    field: str
    kind: Literal["deliberate", "gap"]
    why: str


# KAITO admits these; we refuse them, naming the field.
DIFFERENCES: dict[str, Difference] = {
    "52-docs-lora-phi-3-adapter-transformers.yaml": Difference(
        "inference.adapters[0].source.image",
        "deliberate",
        "placeholder adapter image '<YOUR_ACR>...' is refused at admission, not at pull time",
    ),
    "53-docs-lora-phi-3-adapter-vllm.yaml": Difference(
        "inference.adapters[0].source.image",
        "deliberate",
        "placeholder adapter image '<YOUR_ACR>...' is refused at admission, not at pull time",
    ),
}


@dataclass(frozen=True)
class Manifest:
    """One published Workspace with KAITO's verdict and what it needs.

    Attributes:
        file: File name under ``valid/``.
        body: The Workspace as parsed (namespace not set).
        kaito_verdict: KAITO v0.12's admission verdict as the corpus table writes it.
        nap: Node auto-provisioning on (False: checked with ``disableNodeAutoProvisioning``).
        configmaps: ConfigMaps to create first, name -> data.
        secrets: Secrets to create first, name -> string data.
    """

    file: str
    body: dict[str, Any]
    kaito_verdict: str
    nap: bool
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def kaito_admits(self) -> bool:
        return self.kaito_verdict == "admitted"

    @property
    def expected(self) -> Difference | None:
        """None: we decide as KAITO does; else why and on which field we refuse what KAITO
        admits."""
        return DIFFERENCES.get(self.file)

    @property
    def we_admit(self) -> bool:
        return self.kaito_admits and self.file not in DIFFERENCES

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@cache
def manifests() -> tuple[Manifest, ...]:
    """Every manifest of the corpus, in file order."""
    verdicts: dict[str, str] = {}
    for line in (CORPUS / "README.md").read_text().splitlines():
        match = _ROW.match(line)
        if match:
            verdicts[match.group(1)] = match.group(2).strip()
    scenarios = {
        Path(s["file"]).name: s for s in json.loads((CORPUS / "valid-scenarios.json").read_text())
    }
    out = []
    for path in sorted((CORPUS / "valid").glob("*.yaml")):
        scenario = scenarios.get(path.name, {})
        out.append(
            Manifest(
                file=path.name,
                body=yaml.safe_load(path.read_text()),
                kaito_verdict=verdicts[path.name],
                nap=not (scenario.get("gates") or {}).get("disableNodeAutoProvisioning", False),
                configmaps={c["name"]: c["data"] for c in scenario.get("configmaps") or ()},
                secrets={s["name"]: s["data"] for s in scenario.get("secrets") or ()},
            )
        )
    unknown = set(DIFFERENCES) - {m.file for m in out}
    if unknown or len(verdicts) != len(out):
        raise ValueError(f"corpus and its table disagree: {sorted(unknown)}, {len(verdicts)}")
    return tuple(out)
