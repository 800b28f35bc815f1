"""The Streamlit page of ytmp3 and the small helpers it is built from.

``ui/app.py`` is the page (run with ``streamlit run ui/app.py``); :mod:`ui.runs` talks to
the Prefect API; :mod:`ui.library_view` turns library entries into what a person sees
and downloads. The page only reads the library: it never writes into the data dir.
"""
