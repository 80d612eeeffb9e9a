"""GET URL with Python requests; prints the status and the body. Usage: http_get.py URL"""
import sys

import requests

r = requests.get(sys.argv[1], timeout=10)
print(r.status_code)
print(r.text, end="")
