-- wrk script for bench/sending.py: POSTs a send (or, to the preview, its text) to
-- PATH_TO_POST with a bearer TOKEN, a new text each time, and counts the answers by
-- status.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   n = 0
   answers = {}
   path = os.getenv("PATH_TO_POST")
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   n = n + 1
   local text = string.format("load %d-%d: votre code est %06d", id, n, n)
   local body
   if string.find(path, "preview", 1, true) then
      body = string.format('{"text": "%s"}', text)
   else
      body = string.format('{"to": "+33612345678", "text": "%s"}', text)
   end
   return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
   answers[status] = (answers[status] or 0) + 1
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      local answered = thread:get("answers")
      local parts = {}
      for status, count in pairs(answered) do
         table.insert(parts, string.format('"%d": %d', status, count))
      end
      io.write("answers {" .. table.concat(parts, ", ") .. "}\n")
   end
end
