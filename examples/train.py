"""A short simulated training run, logged the way the docs suggest.

    python examples/train.py

Writes .dreamlake/examples/train/logs.jsonl under the current folder and shows it.
"""

import math
import random

from dreamlake import Session

EPOCHS, BATCHES = 3, 500

with Session(name="train", workspace="examples") as session:
    session.log("Training started", metadata={"model": "ResNet-50", "epochs": EPOCHS})
    for epoch in range(1, EPOCHS + 1):
        losses = []
        for batch in range(BATCHES):
            loss = math.exp(-(epoch * BATCHES + batch) / 800) + random.random() * 0.05
            losses.append(loss)
            session.log(f"Batch {batch}", level="debug", metadata={"loss": loss})
        mean = sum(losses) / len(losses)
        session.log(f"Epoch {epoch} complete", metadata={"epoch": epoch, "train_loss": mean})
        if mean > 0.5:
            session.log("Loss still high", level="warn", metadata={"train_loss": mean})
    session.log("Training complete")

lines = session.log_file.read_text("utf-8").splitlines()
print(f"{session.log_file} now holds {len(lines)} records; the last three:")
for line in lines[-3:]:
    print(" ", line)
