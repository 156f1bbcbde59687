"""FastAgency's Mesop UI on top of FastAPIProvider, pointed at a Flotilla gateway: the app a
FastAgency user writes, unchanged but for the URL. Served by gunicorn from the isolated venv:

    FLOTILLA_FASTAGENCY_URL=http://127.0.0.1:8000/fa/<token> gunicorn mesop_app:app
"""

import os

from fastagency import FastAgency
from fastagency.adapters.fastapi import FastAPIProvider
from fastagency.ui.mesop import MesopUI

provider = FastAPIProvider(fastapi_url=os.environ["FLOTILLA_FASTAGENCY_URL"])
app = FastAgency(provider=provider, ui=MesopUI(), title="Flotilla via FastAgency")
