"""The platform on a laptop: what plays AWS's part locally and never ships in deployment.zip.

`make local` (stack.py) supervises the API (api_server.py over `chalice local`), the stage
worker (worker.py: runner.py plays Lambda's MSK event source mapping), the PSP simulator
(psp_simulator.py) and the dashboard (dashboard/); `make local-aws` adds Tansu and a moto
server (aws_local.py, moto_server.py). Everything here imports chalicelib; nothing in
chalicelib imports this package.
"""
