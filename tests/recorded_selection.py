"""A selection payload recorded in chromium, shared by the tests that read plotly selections."""

# Recorded in chromium from st.plotly_chart(..., on_select="rerun") after a lasso over one Scattergl trace with 1-D
# customdata = row positions 100..149 (trimmed to three points; each point also carries its hover text back);
# the lasso polygon comes in data coordinates, closed (last vertex = first).
LASSO_EVENT = {"selection": {
    "points": [
        {'curve_number': 0, 'point_number': 0, 'point_index': 0,
         'x': 0.1257302210933933, 'y': 0.357380410658956, 'customdata': 100, 'hovertext': 't100'},
        {'curve_number': 0, 'point_number': 1, 'point_index': 1,
         'x': -0.1321048632913019, 'y': -1.2083186322821715, 'customdata': 101, 'hovertext': 't101'},
        {'curve_number': 0, 'point_number': 2, 'point_index': 2,
         'x': 0.6404226504432821, 'y': -0.004454133120083229, 'customdata': 102, 'hovertext': 't102'},
    ],
    "point_indices": [0, 1, 2], "box": [],
    "lasso": [{"xref": "x", "yref": "y",
               "x": [1.021, 0.668, -0.186, -1.04, -1.393, -1.04, -0.186, 0.668, 1.021],
               "y": [-0.101, -0.94, -1.297, -0.94, -0.101, 0.757, 1.114, 0.757, -0.101]}]}}
