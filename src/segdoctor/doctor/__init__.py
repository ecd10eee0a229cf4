"""The doctor: explain why validation Dice is not improving, with the evidence and the fix.

Three ways in, one set of findings:

- ``segdoctor diagnose DATA [--history F] [--model M] [--probe]`` (:mod:`segdoctor.cli.diagnose`),
- ``model.fit(..., callbacks=[DoctorCallback(report="doctor.json")])`` on any Keras model,
- :func:`diagnose` in Python, which returns a :class:`Report`.

Example:
    >>> from segdoctor.doctor import diagnose
    >>> diagnose(history={"loss": [0.7] * 6}).ids
    ['metric-constant']
"""

from segdoctor.doctor.api import diagnose, load_model
from segdoctor.doctor.callback import DoctorCallback
from segdoctor.doctor.catalog import CATALOG, CatalogEntry, implemented_ids, make_finding
from segdoctor.doctor.findings import SEVERITIES, Finding
from segdoctor.doctor.history import analyze_history, load_history
from segdoctor.doctor.report import Report

__all__ = [
    "CATALOG",
    "SEVERITIES",
    "CatalogEntry",
    "DoctorCallback",
    "Finding",
    "Report",
    "analyze_history",
    "diagnose",
    "implemented_ids",
    "load_history",
    "load_model",
    "make_finding",
]
