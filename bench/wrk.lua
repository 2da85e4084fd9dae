-- bench/wrk.lua: the reference ceiling. POSTs, over keep-alive connections,
-- the body and headers that bench/capture.py copied from a real delivery
-- (files named by BENCH_BODY and BENCH_HEADERS), so the receiver parses the
-- same bytes it gets from s3o-notifyd.
local function slurp(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("*a")
	f:close()
	return s
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
for line in slurp(os.getenv("BENCH_HEADERS")):gmatch("[^\r\n]+") do
	local k, v = line:match("^([^:]+):%s*(.*)$")
	local lk = k and k:lower()
	if k and lk ~= "host" and lk ~= "content-length" and lk ~= "connection" then
		wrk.headers[k] = v
	end
end
