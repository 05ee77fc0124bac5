"""Training a plan's models one after another in this process, with progress on the terminal."""

from __future__ import annotations

from dataclasses import dataclass

from ichseg.model.folder import ModelFolder
from ichseg.progress import TrainingEpoch, make_progress
from ichseg.training.jobs import TrainingPlan, run_job


@dataclass(frozen=True)
class LocalRunner:
    """Trains on ``device`` of this machine; one bar for the plan, one per model (each epoch's loss
    and pseudo-Dice). ``verbose`` lets nnU-Net's own output through."""

    device: str = "auto"
    verbose: bool = False
    progress: bool = True

    def check(self) -> None:
        from ichseg.engine import resolve_device

        resolve_device(self.device)  # a wrong device fails before anything is written

    def run(self, plan: TrainingPlan) -> ModelFolder:
        with make_progress(self.progress) as bar:
            overall = bar.add_task(f"Training {plan.folder.recipe_name} on {plan.folder.dataset}",
                                   total=len(plan.jobs))
            for job in plan.jobs:
                epoch_task = bar.add_task(f"  {job.name}", total=plan.epochs, every_step=True)

                def on_epoch(epoch: TrainingEpoch, task=epoch_task, name=job.name) -> None:
                    bar.update(task, completed=epoch.done, description=f"  {name} ({epoch.summary})")

                run_job(job, self.device, on_epoch, self.verbose, bar)
                bar.remove_task(epoch_task)
                bar.advance(overall)
        return plan.folder
