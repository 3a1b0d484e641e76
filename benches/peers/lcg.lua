-- The LCG of benches/workloads/lcg31.lb in Lua 5.4 (integers): n steps.
local n = math.tointeger(tonumber(arg[1]))
local x = 12345
for _ = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
end
print(x)
