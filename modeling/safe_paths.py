"""Paths built from what a user or a file names (a revision, a model or task name, a shard of a checkpoint) stay in
the folder they are meant for: a name that would leave it is refused, never joined."""

from pathlib import Path, PurePosixPath


def path_component(value, what):
    """`value` as one file or folder name: refused when it is empty, `.` or `..`, or holds a separator or NUL."""
    text = str(value)
    if text in ("", ".", "..") or any(character in text for character in ("/", "\\", "\0")):
        raise ValueError(f"{what} {text!r} cannot be a file or folder name (no '/', '\\', '..' or empty name).")
    return text


def model_name_components(name, what="--model-name"):
    """An `org/name` (or `name`) model name, each part a safe path component."""
    parts = str(name).split("/")
    try:
        if len(parts) > 2:
            raise ValueError
        for part in parts:
            path_component(part, what)
    except ValueError:
        raise ValueError(f"{what} {name!r} must be org/name or name, each part a plain file or folder name.") from None
    return name


def inside(folder, relative, what):
    """`folder / relative` for a relative path that a file names; refused unless it stays inside `folder`."""
    path = PurePosixPath(str(relative).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{what} {str(relative)!r} points outside {folder}; only files inside it are read.")
    return Path(folder, *path.parts)
