"""`train`'s progress on the terminal (the `Hooks` methods `edgecls.train.fit.train` calls)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.hooks import Hooks
from ..report.console import distribute_line


class TrainView(Hooks):
    """Draws `train`'s progress: a bar per epoch, then the seed's one-line epoch trace."""

    def __init__(self, console: Console):
        self.console = console
        self.first_loss = None
        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)

    def start(self, info):
        self.console.print(
            f"[bold]{info['dataset']}[/]: {info['classes']} classes, input {info['input_shape']}, "
            f"train {info['train']} / val {info['val']} / held-out {info['test']} images"
            + (f", [yellow]skipped {info['skipped']} unreadable file(s)[/]" if info["skipped"] else "")
            + f"; {info['params']:,} parameters → {info['bundle']}", soft_wrap=True)
        a = info.get("architecture") or {}
        if a:
            weights = a.get("weights")
            self.console.print(
                f"architecture [bold]{a['name']}[/] ({a['why']})"
                + (f"; ImageNet weights from {weights['package']} {weights['version']}" if weights else "")
                + ("; from scratch (--no-pretrained)" if a.get("pretrained") is False else ""),
                soft_wrap=True, highlight=False)
        for note in info.get("notes") or []:
            self.console.print(f"note: {note}", soft_wrap=True, highlight=False)
        p = info["plan"]
        auto = f" [dim](from the data's size: {', '.join(p['auto']).replace('_', ' ')})[/]" if p["auto"] else ""
        stopping = (f"early stopping after epoch {p['start_from_epoch']} (patience {p['patience']})"
                    if p["early_stopping"] else "no early stopping (validation set too small to be evidence)")
        self.console.print(
            f"plan: batch {p['batch_size']}, {p['epochs']} epochs x {p['steps_per_epoch']} steps = "
            f"{p['total_steps']:,} steps, warm-up {p['warmup_steps']} then cosine; {stopping}; "
            f"{p['augment']} augmentation{auto}", soft_wrap=True, highlight=False)
        for i, ph in enumerate(p.get("phases") or []):
            self.console.print(
                f"  phase {i + 1} ({ph['name']}): {ph['trains']}; {ph['epochs']} epochs = {ph['total_steps']:,} "
                f"steps at peak learning rate {ph['lr']:g}", soft_wrap=True, highlight=False)
        d = info.get("distribute")
        if d and d["strategy"] != "default":
            self.console.print(distribute_line(d) + ("" if info.get("writes", True) else
                               "; this worker does not write the bundle (the chief does)"),
                               soft_wrap=True, highlight=False)
        self.progress.start()

    def epoch_start(self, epoch, steps):
        self.task = self.progress.add_task("", total=steps, epoch=epoch)

    def batch(self, step):
        self.progress.update(self.task, completed=step)

    def epoch_end(self, log):
        self.progress.remove_task(self.task)
        self.first_loss = self.first_loss or max(log.loss, 1e-9)
        n = max(1, min(30, round(30 * log.loss / self.first_loss)))  # a bar proportional to the loss
        self.console.print(
            f"epoch {log.epoch:>3}/{log.epochs} [cyan]{'█' * n}{' ' * (30 - n)}[/] "
            f"loss {log.loss:.4f} acc {log.accuracy:.4f} │ val_loss {log.val_loss:.4f} "
            f"val_acc {log.val_accuracy:.4f} │ {log.seconds:.1f}s", highlight=False, soft_wrap=True)

    def evaluating(self):
        self.progress.stop()
