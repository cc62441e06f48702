"""Data preparation: raw videos -> frame folders (or HDF5 files), official annotation files ->
the shared annotation JSON, and the small utilities of the originals (``n_frames``/``fps`` files,
data-set statistics).

Modules:

- ``frame_folders``: names and states of frame folders (``image_%05d.jpg``, ``n_frames``, ``fps``)
- ``videos``: finding videos under a directory and naming their output folders (layouts)
- ``decode``: PyAV decoding, rotation, resizing and frame-rate resampling
- ``extract``: one video -> one finished frame folder (or HDF5 file), atomically
- ``frames``: every video of a directory, in parallel, resumable, with a failure list
- ``hdf5``: the successor's one-file-per-video HDF5 format
- ``tables``: reading the official CSV/TXT files with line numbers for error messages
- ``kinetics``, ``activitynet``, ``ucf101``, ``hmdb51``, ``mit``, ``folder_dataset``: annotation builders
- ``legacy_files``: the seed's ``n_frames`` and ``fps`` files for folders made by other tools
- ``stats``: per-channel mean and std of a data set's frames
"""
