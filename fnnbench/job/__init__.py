"""The job layer: a composed Hydra config -> typed objects -> one tracked training run.

    schema   every key and value of a job config checked (ConfigError: one line)
    build    config -> JobParts(net, opt, data, batch_size, rng), by name through registries
    run      run_job(cfg): build, fit under the job's MLflow run, print the summary line
    signals  SIGINT / SIGTERM as KeyboardInterrupt, held while MLflow writes

It sits above nn / optim / data / train and tracking, and below the command line (fnnbench.cli).
"""

from fnnbench.job.build import JobParts, build
from fnnbench.job.run import run_job
from fnnbench.job.schema import ConfigError

__all__ = ["ConfigError", "JobParts", "build", "run_job"]
