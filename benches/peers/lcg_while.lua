-- The LCG of benches/workloads/lcg31_while.lb in Lua 5.4 (integers): a
-- while loop of n steps.
local n = math.tointeger(tonumber(arg[1]))
local x, i = 12345, 0
while i < n do
    x = (x * 1103515245 + 12345) % 2147483648
    i = i + 1
end
print(x)
