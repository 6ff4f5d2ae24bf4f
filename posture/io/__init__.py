"""Files in and out, safely: image and video decoding with limits, atomic writes, file names, CSV
cells a spreadsheet cannot run, folder walks, the dataset's file formats, the label store. Nothing
here knows about posture; it sits under every room that reads or writes."""
