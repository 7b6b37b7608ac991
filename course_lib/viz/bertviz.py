"""bertviz views of the course's own models, kept small and reproducible.

bertviz's ``head_view``/``model_view`` take a list of per-layer attention tensors shaped
(1, nh, t, t) plus the tokens. Two practical points handled here: the weights are rounded (in
float64, so ``tolist`` prints short numbers and the stored notebook stays small) and the layers
can be restricted. bertviz draws with JavaScript (require.js, d3, jQuery) fetched from a CDN:
offline, or in an untrusted notebook, nothing renders — the course's own explorer
(``course_lib.viz.attention``) always works.

bertviz itself displays three outputs: a ``<script src=require.js>`` tag, the view's HTML and
its JavaScript. In JupyterLab the external script loads asynchronously, so the JavaScript can
run before ``require`` exists ("require is not defined": a blank view until the cell is re-run).
``show`` emits ONE HTML output instead whose script loads require.js first (unless the page
already has it) and draws in its onload callback.
"""
from __future__ import annotations

import torch

__all__ = ["prepare_attention", "head_view", "model_view", "show", "bertviz_view", "OFFLINE_NOTE",
           "MISSING_NOTE"]

REQUIRE_JS = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js"

OFFLINE_NOTE = ("bertviz loads its JavaScript from a CDN: with no internet (or an untrusted "
                "notebook) the view stays blank. The course's explorer widget works offline.")


MISSING_NOTE = ("bertviz is not installed, so this view is skipped (`pip install bertviz`, or run "
                "the notebook's first cell on Colab); the explorer widget above shows the same "
                "maps.")


def bertviz_view(name: str):
    """bertviz's ``head_view`` or ``model_view``, or None after printing MISSING_NOTE when the
    optional bertviz package is absent: a missing extra never stops a notebook."""
    try:
        import bertviz
    except ImportError:
        print(MISSING_NOTE)
        return None
    return getattr(bertviz, name)


def prepare_attention(weights, tokens: list[str], decimals: int = 3,
                      layers: list[int] | None = None) -> list[torch.Tensor]:
    """(layers, nh, t, s) tensor or list of (nh, t, s)/(1, nh, t, s) -> bertviz's list of (1, nh, t, s)."""
    per_layer = list(weights) if not isinstance(weights, torch.Tensor) else list(weights.unbind(0))
    out = []
    for i, w in enumerate(per_layer):
        w = w.detach().cpu()
        if w.dim() == 3:
            w = w[None]
        if w.dim() != 4 or w.shape[0] != 1:
            raise ValueError(f"layer {i}: expected attention of shape (1, nh, t, s), received "
                             f"{tuple(w.shape)}")
        if w.shape[-1] != len(tokens) and w.shape[-2] != len(tokens):
            raise ValueError(f"layer {i}: attention covers {w.shape[-1]} positions but "
                             f"{len(tokens)} tokens were given")
        out.append(w.double().round(decimals=decimals))
    if layers is not None:
        out = [out[i] for i in layers]
    return out


def show(view, **kwargs):
    """Display a bertviz view (``bertviz.head_view``/``model_view`` and their arguments) as one
    HTML output that loads require.js before drawing. Returns the IPython HTML object."""
    from IPython.display import HTML, display

    returned = view(html_action="return", **kwargs).data
    start, end = returned.index('<script type="text/javascript">'), returned.rindex("</script>")
    markup = returned[:start].replace(f'<script src="{REQUIRE_JS}"></script>', "")
    draw = returned[start + len('<script type="text/javascript">'):end]
    loader = ("(function () {\n  function draw() {\n" + draw + "\n  }\n"
              "  if (typeof window.requirejs === 'function') { draw(); return; }\n"
              "  var s = document.createElement('script');\n"
              f"  s.src = '{REQUIRE_JS}';\n"
              "  s.onload = draw;\n  document.head.appendChild(s);\n})();")
    html = HTML(markup + '<script type="text/javascript">\n' + loader + "\n</script>")
    display(html)
    return html


def head_view(weights, tokens: list[str], layers: list[int] | None = None, **kwargs):
    """bertviz head view of self-attention weights (layers, nh, t, t) for one sequence."""
    _head_view = bertviz_view("head_view")
    if _head_view is None:
        return
    show(_head_view, attention=prepare_attention(weights, tokens, layers=layers), tokens=tokens,
         **kwargs)


def model_view(weights, tokens: list[str], layers: list[int] | None = None, **kwargs):
    """bertviz model view (every layer x head at once) of self-attention weights."""
    _model_view = bertviz_view("model_view")
    if _model_view is None:
        return
    show(_model_view, attention=prepare_attention(weights, tokens, layers=layers), tokens=tokens,
         **kwargs)
