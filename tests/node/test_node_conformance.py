"""docs/conformance_statement.md says what the code does: the SOP classes and transfer syntaxes the SCP accepts (in
the order of preference), and settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from node.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from node.settings import Destination, NodeSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance_statement.md"


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_scp_sop_classes_and_transfer_syntaxes_are_the_documented_ones() -> None:
    text = DOC.read_text()
    classes = _section(text, "As **SCP**", "Which stored instances")
    uids = re.findall(r"\| (1\.2\.840\.10008\.[0-9.]+) \|", classes)
    assert uids == [str(c) for c in STORAGE_SOP_CLASSES] + ["1.2.840.10008.1.1"]
    accepted = _section(text, "*Accepted presentation contexts.*", "Verification is accepted")
    assert re.findall(r"\| (1\.2\.840\.10008\.[0-9.]+) \|", accepted) == [str(t) for t in TRANSFER_SYNTAXES]


def test_documented_settings_exist() -> None:
    table = _section(DOC.read_text(), "### 4.4 Configuration", "## 5 Media")
    names = set(re.findall(r"`([a-z_]+)`", table)) - {"dimse", "stow"}
    known = set(NodeSettings.model_fields) | set(Destination.model_fields) | {"kind"}
    assert names and names <= known, names - known
