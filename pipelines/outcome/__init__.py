"""Synthetic outcomes of the virtual patients (ground truth for outcome models such as ``models.neck_pain``)."""
