"""dnsmasq for one network: pure rendering (render.py) and process control (control.py)."""
