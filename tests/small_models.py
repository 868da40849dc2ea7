"""A small CNN trained for a few seconds on real MNIST, shared by the attack
and baseline tests (far from the paper's models, but it learns digits)."""

import keras
from keras import layers


def train_small_cnn(mnist_raw, n_train=2000, epochs=2, seed=0):
    """A two-convolution CNN returning logits, `epochs` of Adam on the first
    `n_train` real training images."""
    keras.utils.set_random_seed(seed)
    x_train = mnist_raw["train_images"][:n_train, :, :, None].astype("float32") / 255.0
    y_train = mnist_raw["train_labels"][:n_train].astype("int64")
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return model


def strided_cnn(input_shape, num_classes, widths=(8, 8)):
    """Two stride-2 3x3 convolutions and a dense layer to logits, for any
    input shape and class count (the tests of models that are not the paper's)."""
    return keras.Sequential(
        [keras.Input(input_shape)]
        + [layers.Conv2D(w, 3, strides=2, activation="relu") for w in widths]
        + [layers.Flatten(), layers.Dense(num_classes)]
    )
