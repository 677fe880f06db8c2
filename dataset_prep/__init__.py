"""Dataset preparation: importers into RecBole atomic files (``python -m dataset_prep.mmrec``)."""
