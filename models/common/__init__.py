"""What every model in ``models/`` shares, one module per idea: ``checkpoint.py`` the one weights schema
(loaded with ``weights_only=True``), ``predictor.py`` the one predictor shape (``Cls.load(weights, device)``,
``.algorithm``) and the device choice, ``training.py`` seeding / learning-rate schedules / the time-boxed step
loop, ``metrics.py`` the classification and calibration metrics, ``images.py`` uint8 storage of inputs."""
