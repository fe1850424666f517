"""uetool's pure core: no Ray, no engines, no OmegaConf. Everything here is vectorised numpy/scipy.

Modules by concern: outcomes, prompts, parsing, edges, graph, thurstonian, active, metrics, agents, results.
"""
