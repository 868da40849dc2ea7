"""TensorBoard summaries of the report: its figures as images, its tables as text.

Everything goes into one event directory, `<tensorboard_dir>/report/`, so that
TensorBoard's tabs sort it by kind:

- Images: every figure of the report under its figure key, e.g.
  `universal/<model>` (error and fooling rates against the L2 norm),
  `spectrum/<model>`, `invariant_dot/<model>`, `theory/<model>`, `fig1`,
  `vectors/<model>/<attack or invariant>` (the top singular vectors);
- Text: `tables/<name>` and `reading` as markdown.

No scalars: a spectrum or a curve over a norm grid has no step, and drawn as
scalars against the index of the grid it hides the norm the reader looks for.
The Scalars tab is left to training (`keras.callbacks.TensorBoard`, one step
per epoch, in `train-<model>/`).
"""

import glob
import os

__all__ = ["REPORT_RUN", "write_tensorboard"]

REPORT_RUN = "report"


def _clear_events(path):
    # A report rebuilt into the same directory would otherwise add a second set
    # of summaries at step 0, and TensorBoard would show either one.
    for old in glob.glob(os.path.join(path, "events.out.tfevents.*")):
        os.remove(old)


def _write_figure(tf, tag, png_path):
    with open(png_path, "rb") as f:
        image = tf.io.decode_png(f.read(), channels=4)
    tf.summary.image(tag, image[tf.newaxis], step=0)


def write_tensorboard(tensorboard_dir, figure_paths, tables, reading_markdown):
    """Writes the report's figures and tables as TensorBoard event files.

    Args:
        tensorboard_dir: root directory; the event files go into `report/` under it.
        figure_paths: figure key (the image's tag) -> PNG file, as `figures.draw_all` returns.
        tables: table name -> markdown text (tag `tables/<name>`).
        reading_markdown: the report's "Reading" section as markdown (tag `reading`).

    Returns:
        The event directory written.

    Example:

    ```python
    write_tensorboard("runs/default/tensorboard", {"universal/gcnn": "gcnn_universal.png"},
                      {"universal": "| model | ... |"}, "All claims agree.")
    ```
    """
    import tensorflow as tf

    path = os.path.join(tensorboard_dir, REPORT_RUN)
    os.makedirs(path, exist_ok=True)
    _clear_events(path)
    writer = tf.summary.create_file_writer(path)
    with writer.as_default():
        for key in sorted(figure_paths):
            _write_figure(tf, key, figure_paths[key])
        for name, markdown in tables.items():
            tf.summary.text(f"tables/{name}", markdown, step=0)
        tf.summary.text("reading", reading_markdown, step=0)
    writer.close()
    return path
