// Simulation-only harness for the engine: plays a command file into the engine's `cmd` stream
// and records every `resp` word, so a whole layer runs without Python touching each cycle.
//
// Command file (+cmds=PATH, $readmemh): one 154-bit word per line, {op[1:0], command[151:0]}.
//   op 0: send command (the engine's command_layout: write, space, addr, data from bit 0)
//   op 1: wait until the engine reports done
//   op 2: end: dump the responses (+resps=PATH, $writememh) and raise `finished`
module engine_harness #(parameter CMD_DEPTH = 1 << 18, RESP_DEPTH = 1 << 17) (
    input  wire clk,
    input  wire rst,
    output reg  finished
);
    reg [153:0] cmds [0:CMD_DEPTH-1];
    reg [127:0] resps [0:RESP_DEPTH-1];
    reg [31:0]  pc, n_resp;
    reg         ending;
    reg [1023:0] cmd_file, resp_file;

    wire [153:0] word = cmds[pc];
    wire [1:0]   op = word[153:152];
    wire         cmd_ready, resp_valid, done;
    wire [127:0] resp_payload;

    engine dut (
        .clk(clk), .rst(rst),
        .cmd__valid(!rst && !ending && !finished && op == 2'd0), .cmd__ready(cmd_ready),
        .cmd__payload(word[151:0]),
        .resp__valid(resp_valid), .resp__ready(1'b1), .resp__payload(resp_payload),
        .done(done)
    );

    initial begin
        if (!$value$plusargs("cmds=%s", cmd_file)) $fatal(1, "harness: +cmds=PATH is missing");
        if (!$value$plusargs("resps=%s", resp_file)) $fatal(1, "harness: +resps=PATH is missing");
        $readmemh(cmd_file, cmds);
    end

    always @(posedge clk) begin
        if (rst) begin
            pc <= 0; n_resp <= 0; ending <= 0; finished <= 0;
        end else begin
            if (resp_valid) begin
                resps[n_resp[16:0]] <= resp_payload;
                n_resp <= n_resp + 1;
            end
            if (!ending && !finished) begin
                case (op)
                    2'd0: if (cmd_ready) pc <= pc + 1;
                    2'd1: if (done) pc <= pc + 1;
                    default: ending <= 1;
                endcase
            end
            if (ending && !resp_valid) begin
                $writememh(resp_file, resps, 0, n_resp - 1);
                finished <= 1;
                ending <= 0;
            end
        end
    end
endmodule
