"""The patient level, in one home: an X-ray and an MRI study of one patient -> one combined report.

* ``history``: ``PatientHistory``, the interface through which the other study of the patient is found (the node
  implements it over its index), and which pipelines pair (``PAIRED``);
* ``report``: the rule-based report (paper 002 Fig. 7 factors, corroborating findings across modalities);
* ``assemble``: the model inputs read from both studies, the neck-pain prediction, and ``patient_objects``
  (the SR + PDF, encoded by ``pipelines.dicom_out.patient``).
"""

from pipelines.patient.assemble import patient_objects
from pipelines.patient.history import PAIRED, PatientHistory, other_modality

__all__ = ["PAIRED", "PatientHistory", "other_modality", "patient_objects"]
