"""Look at runs in a browser: a static site for a study or runs (`site.build_site`), and a
local labelling page whose labels feed `score validate --gold` (`label_server`)."""

from refusalscope.view.rows import ViewData, collect
from refusalscope.view.site import build_site

__all__ = ["ViewData", "build_site", "collect"]
