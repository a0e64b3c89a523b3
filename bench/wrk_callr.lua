-- wrk script for bench/throughput.py: POSTs the planned CALLR deliveries in order.
-- REQUESTS names a file of lines "signature<TAB>body". Thread k of n sends lines
-- k, k+n, k+2n, ... and wraps around at the end. At the end, one JSON line per
-- thread: how far it got, how often it wrapped, and its answers by status.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   lines = {}
   local n = 0
   for line in io.lines(os.getenv("REQUESTS")) do
      if n % tonumber(os.getenv("THREADS")) == id then
         local tab = string.find(line, "\t", 1, true)
         table.insert(lines, {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)})
      end
      n = n + 1
   end
   nlines = #lines
   position = 0
   wraps = 0
   answers = {}
   path = os.getenv("WEBHOOK_PATH")
end

function request()
   position = position + 1
   if position > #lines then
      position = 1
      wraps = wraps + 1
   end
   local entry = lines[position]
   return wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-CALLR-HmacSignature"] = entry[1],
   }, entry[2])
end

function response(status, headers, body)
   local key = tostring(status)
   answers[key] = (answers[key] or 0) + 1
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      local parts = {}
      for status, count in pairs(thread:get("answers")) do
         table.insert(parts, string.format('"%s": %d', status, count))
      end
      io.write(string.format(
         '{"thread": %d, "position": %d, "wraps": %d, "lines": %d, "answers": {%s}}\n',
         thread:get("id"), thread:get("position"), thread:get("wraps"),
         thread:get("nlines"), table.concat(parts, ", ")))
   end
end
