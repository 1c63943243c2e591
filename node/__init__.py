"""The DICOM node: receive (``scp``), keep (``spool``), decide when a study is complete (``assembly``),
queue (``dispatch``, ``tasks``: Celery with Redis or the embedded filesystem broker), deliver results
(``deliver``: C-STORE and STOW-RS), and operate (``settings``, ``service``, ``cli``, ``status``,
``metrics``, ``logs``, ``demo``, ``scu``). It knows DICOM networking, files and queues; nothing of spines
(``pipelines.analyze`` does the analysis). See docs/node.md.
"""
