"""The command-line faces of fnnbench (nothing below imports this package).

    main       python -m fnnbench [overrides]   preflight, then @hydra.main -> fnnbench.job
    preflight  every command line checked before Hydra launches anything
    reproduce  python -m fnnbench.reproduce     every claim sweep, then the report
"""
