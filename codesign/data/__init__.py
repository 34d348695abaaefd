"""Corpora shared by training, evaluation and the jobs above them (`codesign.data.corpus`)."""
